//! Throughput of the streaming loader against its baselines, on this machine:
//! `std::fs::read` of the file (the disk baseline), the loader reading the file, the loader
//! streaming from an HTTP server on 127.0.0.1 (in this process), download-to-disk-then-load
//! (what AIBrix's streaming loader replaces) and, with `--moto`, a local moto S3 server.
//!
//! ```text
//! cargo run --release -p brix-loader --example loader_bench -- \
//!     [--sizes 64M,512M,2G] [--concurrency 1,4,16] [--chunk 16M] [--buffer 256M] \
//!     [--reps 3] [--dir /tmp] [--digest on|off] [--moto PATH --s3-max 512M]
//! ```
//! Prints a markdown table: median GB/s (10⁹ B/s) of `--reps` runs (page cache warm: the file
//! is read once before timing), and each row's ratio to `fs::read` and to
//! download-then-load of the same size.

#[path = "../tests/common/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use brix_loader::{Credentials, HostSink, LoadOptions, Source, load};
use brix_testkit::moto::Moto;
use reqwest::Method;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    sizes: Vec<u64>,
    concurrency: Vec<usize>,
    chunk: usize,
    buffer: usize,
    reps: usize,
    dir: PathBuf,
    moto: Option<PathBuf>,
    s3_max: u64,
    digest: bool,
}

fn size(s: &str) -> Res<u64> {
    let s = s.trim();
    let (num, mul) = match s.chars().last() {
        Some('K') => (&s[..s.len() - 1], 1 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    Ok(num.parse::<u64>()? * mul)
}

fn args() -> Res<Args> {
    let mut a = Args {
        sizes: vec![64 << 20, 512 << 20, 2 << 30],
        concurrency: vec![1, 4, 16],
        chunk: 16 << 20,
        buffer: 256 << 20,
        reps: 3,
        dir: std::env::temp_dir(),
        moto: None,
        s3_max: 512 << 20,
        digest: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--sizes" => a.sizes = v.split(',').map(size).collect::<Res<_>>()?,
            "--concurrency" => {
                a.concurrency = v
                    .split(',')
                    .map(|c| c.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--chunk" => a.chunk = size(&v)? as usize,
            "--buffer" => a.buffer = size(&v)? as usize,
            "--reps" => a.reps = v.parse()?,
            "--dir" => a.dir = PathBuf::from(v),
            "--moto" => a.moto = Some(PathBuf::from(v)),
            "--s3-max" => a.s3_max = size(&v)?,
            "--digest" => a.digest = v != "off",
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(a)
}

/// A safetensors file of about `bytes`: BF16 tensors of 32 MiB (fewer bytes for small files),
/// pseudo-random contents, header written by hand so nothing holds the whole file.
fn write_file(path: &Path, bytes: u64) -> Res<()> {
    let tensor = (32u64 << 20).min(bytes);
    let n = bytes.div_ceil(tensor);
    let cols = 4096u64;
    let rows = tensor / (2 * cols);
    let tensor = rows * cols * 2;
    let mut header = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    for i in 0..n {
        header.push_str(&format!(
            ",\"layers.{i}.weight\":{{\"dtype\":\"BF16\",\"shape\":[{rows},{cols}],\"data_offsets\":[{},{}]}}",
            i * tensor,
            (i + 1) * tensor
        ));
    }
    header.push('}');
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    f.write_all(&(header.len() as u64).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    let mut block = vec![0u8; 1 << 20];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in block.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes());
    }
    let mut left = n * tensor;
    let mut i = 0u64;
    while left > 0 {
        block[..8].copy_from_slice(&i.to_le_bytes());
        let take = left.min(block.len() as u64) as usize;
        f.write_all(&block[..take])?;
        left -= take as u64;
        i += 1;
    }
    f.flush()?;
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median GB/s of `reps` runs of `f`, each moving `bytes`.
async fn measure<F, Fut>(reps: usize, bytes: u64, mut f: F) -> Res<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Res<()>>,
{
    let mut rates = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        f().await?;
        rates.push(bytes as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    Ok(median(rates))
}

async fn load_once(source: &Source, opts: &LoadOptions, bytes: u64) -> Res<()> {
    let mut sink = HostSink::new();
    let r = load(source, &mut sink, opts).await?;
    if r.bytes + r.header_bytes != bytes {
        return Err(format!("loaded {} of {bytes} bytes", r.bytes + r.header_bytes).into());
    }
    if r.peak_buffered_bytes > opts.max_buffered_bytes {
        return Err("buffer bound exceeded".into());
    }
    Ok(())
}

/// GET the whole file to `to` (streamed, no fsync), then load it from disk with the loader.
async fn download_then_load(
    client: &reqwest::Client,
    url: &str,
    to: &Path,
    opts: &LoadOptions,
    bytes: u64,
) -> Res<()> {
    let mut resp = client.get(url).send().await?.error_for_status()?;
    let mut f = tokio::fs::File::create(to).await?;
    while let Some(chunk) = resp.chunk().await? {
        tokio::io::AsyncWriteExt::write_all(&mut f, &chunk).await?;
    }
    // tokio's File writes in the background: flush before reading the file back.
    tokio::io::AsyncWriteExt::flush(&mut f).await?;
    drop(f);
    load_once(&Source::File(to.to_owned()), opts, bytes).await?;
    std::fs::remove_file(to)?;
    Ok(())
}

/// Loads `source` once (untimed) and checks every tensor against the safetensors crate reading
/// `file` from disk: names, bytes and digests; returns how many tensors matched.
async fn verify(source: &Source, file: &[u8], opts: &LoadOptions) -> Res<usize> {
    let mut sink = HostSink::new();
    let report = load(source, &mut sink, opts).await?;
    let reference = safetensors::SafeTensors::deserialize(file)?;
    let mut matched = 0;
    for d in &report.digests {
        let want = reference.tensor(&d.name)?;
        let got = sink.tensor(&d.name).ok_or("tensor missing from the sink")?;
        if got != want.data() || d.xxh64 != brix_loader::digest(want.data()) {
            return Err(format!("{}: loaded bytes differ from the file", d.name).into());
        }
        matched += 1;
    }
    if matched != reference.len() || report.bytes != sink.data().len() as u64 {
        return Err("tensor count or byte total differs from the file".into());
    }
    Ok(matched)
}

struct Row {
    size: u64,
    what: String,
    conc: String,
    gbps: f64,
}

#[tokio::main]
async fn main() -> Res<()> {
    let a = args()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let client = reqwest::Client::new();
    let moto = match &a.moto {
        Some(exe) => Some(start_moto(exe).await?),
        None => None,
    };
    let mut rows = Vec::new();
    let mut verified = Vec::new();
    for &size in &a.sizes {
        let path = a.dir.join(format!(
            "brix-loader-bench-{}.safetensors",
            std::process::id()
        ));
        let dl = a
            .dir
            .join(format!("brix-loader-bench-{}.download", std::process::id()));
        write_file(&path, size)?;
        let bytes = std::fs::metadata(&path)?.len();
        let _ = std::fs::read(&path)?; // warm the page cache
        let opts = |c: usize| LoadOptions {
            chunk_bytes: a.chunk,
            concurrency: c,
            max_buffered_bytes: a.buffer,
            digest: a.digest,
            ..LoadOptions::default()
        };
        let mut row = |what: &str, conc: String, gbps: f64| {
            eprintln!("{size:>12} {what:<28} {conc:>4} {gbps:7.3} GB/s");
            rows.push(Row {
                size,
                what: what.to_owned(),
                conc,
                gbps,
            });
        };
        let g = measure(a.reps, bytes, || async {
            let v = std::fs::read(&path)?;
            std::hint::black_box(v);
            Ok(())
        })
        .await?;
        row("std::fs::read (disk baseline)", "-".into(), g);
        for &c in &a.concurrency {
            let src = Source::File(path.clone());
            let o = opts(c);
            let g = measure(a.reps, bytes, || load_once(&src, &o, bytes)).await?;
            row("loader: local file", c.to_string(), g);
        }
        let server = server::serve_file(path.clone(), server::Mode::Ranges).await;
        {
            let file = std::fs::read(&path)?;
            let o = opts(4);
            let a = verify(&Source::File(path.clone()), &file, &o).await?;
            let b = verify(&Source::Http(server.url.clone()), &file, &o).await?;
            verified.push(format!(
                "{} MiB: file {a} tensors, HTTP {b} tensors",
                size >> 20
            ));
        }
        for &c in &a.concurrency {
            let src = Source::Http(server.url.clone());
            let o = opts(c);
            let g = measure(a.reps, bytes, || load_once(&src, &o, bytes)).await?;
            row("loader: HTTP stream", c.to_string(), g);
        }
        let best = *a.concurrency.iter().max().unwrap_or(&4);
        let o = opts(best);
        let g = measure(a.reps, bytes, || {
            download_then_load(&client, &server.url, &dl, &o, bytes)
        })
        .await?;
        row("HTTP download, then load", best.to_string(), g);
        drop(server);
        if let Some(m) = &moto
            && size <= a.s3_max
        {
            let key = format!("/bench/{size}.safetensors");
            m.try_s3(Method::PUT, &key, std::fs::read(&path)?).await?;
            for &c in &a.concurrency {
                let src = Source::S3 {
                    url: format!("s3://bench/{size}.safetensors"),
                    credentials: bench_creds(m),
                };
                let o = opts(c);
                let g = measure(a.reps, bytes, || load_once(&src, &o, bytes)).await?;
                row("loader: S3 stream (moto)", c.to_string(), g);
            }
            m.try_s3(Method::DELETE, &key, Vec::new()).await?;
        }
        std::fs::remove_file(&path)?;
    }
    println!(
        "{cores} CPU cores; page cache warm; chunk {} MiB; max_buffered {} MiB; median of {} runs; \
         digests {}; HostSink (one arena)\n",
        a.chunk >> 20,
        a.buffer >> 20,
        a.reps,
        if a.digest { "on" } else { "off" }
    );
    println!(
        "Verified (untimed load per source, every tensor's bytes and xxh64 equal the safetensors \
         crate's reading of the file): {}\n",
        verified.join("; ")
    );
    println!("| size | source | concurrency | GB/s | × fs::read | × download-then-load |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        let of = |what: &str| {
            rows.iter()
                .find(|x| x.size == r.size && x.what.starts_with(what))
                .map_or(f64::NAN, |x| r.gbps / x.gbps)
        };
        println!(
            "| {} MiB | {} | {} | {:.3} | {:.2} | {:.2} |",
            r.size >> 20,
            r.what,
            r.conc,
            r.gbps,
            of("std::fs::read"),
            of("HTTP download")
        );
    }
    Ok(())
}

/// A moto S3 server (anonymous access: IAM checks stay off here) with bucket `bench`.
async fn start_moto(exe: &Path) -> Res<Moto> {
    let m = Moto::launch(exe, Duration::from_secs(600)).await?;
    m.try_s3(Method::PUT, "/bench", Vec::new()).await?;
    Ok(m)
}

/// Any key works while moto's IAM checks are off.
fn bench_creds(m: &Moto) -> Credentials {
    let map: BTreeMap<String, String> = [
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_ENDPOINT_URL", m.endpoint()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Credentials::from_map(&map)
}
