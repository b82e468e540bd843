use std::collections::HashSet;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::workload::vocab::{VOCAB, VOCAB_LEN, text, word};

#[test]
fn words_are_distinct_lowercase_letters() {
    assert!(VOCAB.len() >= 500, "only {} words", VOCAB.len());
    let distinct: HashSet<&str> = VOCAB.iter().copied().collect();
    assert_eq!(distinct.len(), VOCAB.len());
    for w in VOCAB {
        assert!(
            !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()),
            "{w:?}"
        );
    }
}

#[test]
fn text_is_space_separated_and_ids_wrap() {
    assert_eq!(text(&[]), "");
    assert_eq!(text(&[0, 1]), format!(" {} {}", VOCAB[0], VOCAB[1]));
    assert_eq!(word(VOCAB_LEN + 3), VOCAB[3]);
    assert_eq!(text(&[VOCAB_LEN]), text(&[0]));
}

#[test]
fn every_word_is_one_cl100k_token() {
    let bpe = tiktoken_rs::cl100k_base().expect("cl100k_base loads");
    let mut tokens = HashSet::new();
    for w in VOCAB {
        let encoded = bpe.encode_ordinary(&format!(" {w}"));
        assert_eq!(encoded.len(), 1, "\" {w}\" is {} tokens", encoded.len());
        tokens.insert(encoded[0]);
    }
    assert_eq!(tokens.len(), VOCAB.len(), "two words share a token");
}

#[test]
fn a_random_sequence_of_n_words_is_n_tokens() {
    let bpe = tiktoken_rs::cl100k_base().expect("cl100k_base loads");
    let single: Vec<_> = VOCAB
        .iter()
        .map(|w| bpe.encode_ordinary(&format!(" {w}"))[0])
        .collect();
    let mut rng = SmallRng::seed_from_u64(7);
    for n in [1, 2, 17, 5000] {
        let ids: Vec<u32> = (0..n).map(|_| rng.random_range(0..VOCAB_LEN)).collect();
        let encoded = bpe.encode_ordinary(&text(&ids));
        assert_eq!(encoded.len(), n);
        let expected: Vec<_> = ids.iter().map(|&id| single[id as usize]).collect();
        assert_eq!(encoded, expected, "tokens merge across a word boundary");
    }
}
