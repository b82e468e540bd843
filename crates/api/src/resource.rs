//! One resource document of the fleet file, dispatched on `kind`, and the checks across them.
//!
//! `Resource` deserializes by hand rather than with `#[serde(tag = "kind")]`: serde's
//! internally tagged enums buffer the whole document before choosing the variant, and
//! `serde_yaml_ng` then loses the path and line of any error inside `spec`. Here `kind` is read
//! as it comes; when it precedes `spec` (as in every Kubernetes manifest) `spec` is parsed in
//! place, so an error reads `resources[0].spec.maxReplicas: invalid type ... at line 9`. A
//! `spec` written before `kind` is buffered and its errors name `spec` without a line.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::adapter::{ADAPTER_API_VERSION, ModelAdapter, ModelAdapterSpec};
use crate::autoscaler::{AUTOSCALER_API_VERSION, PodAutoscaler, PodAutoscalerSpec};
use crate::error::{Deprecation, FieldError, fail, join};
use crate::meta::ObjectMeta;

/// One AIBrix resource document, in AIBrix's schema.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    /// A LoRA adapter to load onto a model's replicas.
    ModelAdapter(ModelAdapter),
    /// An autoscaler for one model.
    PodAutoscaler(PodAutoscaler),
}

/// The kinds Brix reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    ModelAdapter,
    PodAutoscaler,
}

const KINDS: &[&str] = &["ModelAdapter", "PodAutoscaler"];
const FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::ModelAdapter => "ModelAdapter",
            Self::PodAutoscaler => "PodAutoscaler",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Self::ModelAdapter => ADAPTER_API_VERSION,
            Self::PodAutoscaler => AUTOSCALER_API_VERSION,
        }
    }
}

impl Resource {
    /// `kind` as the document spells it.
    pub fn kind(&self) -> &'static str {
        self.kind_tag().name()
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// `metadata`.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::ModelAdapter(r) => &r.metadata,
            Self::PodAutoscaler(r) => &r.metadata,
        }
    }

    /// `apiVersion` as written.
    pub fn api_version(&self) -> &str {
        match self {
            Self::ModelAdapter(r) => &r.api_version,
            Self::PodAutoscaler(r) => &r.api_version,
        }
    }

    fn kind_tag(&self) -> Kind {
        match self {
            Self::ModelAdapter(_) => Kind::ModelAdapter,
            Self::PodAutoscaler(_) => Kind::PodAutoscaler,
        }
    }
}

/// Checks every resource, then the rules across them and the model list.
///
/// `model_names` are the fleet file's model names (already checked by
/// [`crate::validate_models`]). Rules: the right `apiVersion` per kind; Kubernetes-valid names,
/// unique per kind; an adapter's name is not also a model's; each adapter's base model and
/// each autoscaler's target is a model in the file; at most one autoscaler per model; plus each
/// kind's own field rules.
pub fn validate_resources(resources: &[Resource], model_names: &[&str]) -> Result<(), FieldError> {
    let mut names: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut scaled: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, resource) in resources.iter().enumerate() {
        let at = format!("resources[{i}]");
        resource.validate(model_names).map_err(|e| e.under(&at))?;
        let (kind, name) = (resource.kind(), resource.name());
        if let Some(first) = names.insert((kind, name), i) {
            return fail(
                format!("{at}.metadata.name"),
                format!("'{name}' is already the name of {kind} resources[{first}]"),
            );
        }
        if let Resource::PodAutoscaler(autoscaler) = resource {
            let target = autoscaler.spec.scale_target_ref.name.as_str();
            if let Some(first) = scaled.insert(target, i) {
                return fail(
                    format!("{at}.spec.scaleTargetRef.name"),
                    format!(
                        "model '{target}' is already scaled by resources[{first}]; one \
                         PodAutoscaler per model"
                    ),
                );
            }
        }
    }
    Ok(())
}

impl Resource {
    /// One document's rules; paths are relative to the document.
    fn validate(&self, model_names: &[&str]) -> Result<(), FieldError> {
        let kind = self.kind_tag();
        if self.api_version() != kind.api_version() {
            return fail(
                "apiVersion",
                format!(
                    "'{}' is not the apiVersion of kind {}; expected {}",
                    self.api_version(),
                    kind.name(),
                    kind.api_version()
                ),
            );
        }
        self.metadata().validate()?;
        match self {
            Self::ModelAdapter(adapter) => adapter.validate(model_names),
            Self::PodAutoscaler(autoscaler) => autoscaler.validate(model_names),
        }
    }
}

/// Legacy spellings the resources use, for the caller to log once at start-up.
pub fn deprecations(resources: &[Resource]) -> Vec<Deprecation> {
    let mut out = Vec::new();
    for (i, resource) in resources.iter().enumerate() {
        if let Resource::PodAutoscaler(autoscaler) = resource {
            out.extend(autoscaler.deprecations().into_iter().map(|d| Deprecation {
                field: join(&format!("resources[{i}]"), &d.field),
                message: d.message,
            }));
        }
    }
    out
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ResourceVisitor)
    }
}

struct ResourceVisitor;

/// `spec`, parsed in place when `kind` came first, else kept as YAML for later.
enum Spec {
    Adapter(ModelAdapterSpec),
    Autoscaler(Box<PodAutoscalerSpec>),
    Pending(serde_yaml_ng::Value),
}

/// A top-level key; an unknown one fails at the key, so the error has its line.
enum Field {
    ApiVersion,
    Kind,
    Metadata,
    Spec,
    Status,
}

struct FieldSeed;
struct KindSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldSeed {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a resource field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
        Ok(match v {
            "apiVersion" => Field::ApiVersion,
            "kind" => Field::Kind,
            "metadata" => Field::Metadata,
            "spec" => Field::Spec,
            "status" => Field::Status,
            other => return Err(E::unknown_field(other, FIELDS)),
        })
    }
}

impl<'de> DeserializeSeed<'de> for KindSeed {
    type Value = Kind;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KindSeed {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a resource kind")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        match v {
            "ModelAdapter" => Ok(Kind::ModelAdapter),
            "PodAutoscaler" => Ok(Kind::PodAutoscaler),
            other => Err(E::custom(format!(
                "unknown kind `{other}`; Brix reads {}",
                KINDS.join(" and ")
            ))),
        }
    }
}

impl<'de> Visitor<'de> for ResourceVisitor {
    type Value = Resource;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a resource document with apiVersion, kind, metadata and spec")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Resource, A::Error> {
        let mut api_version: Option<String> = None;
        let mut kind: Option<Kind> = None;
        let mut metadata: Option<ObjectMeta> = None;
        let mut spec: Option<Spec> = None;
        let mut seen_status = false;
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            match field {
                Field::ApiVersion => {
                    once(api_version.is_some(), "apiVersion")?;
                    api_version = Some(map.next_value()?);
                }
                Field::Kind => {
                    once(kind.is_some(), "kind")?;
                    kind = Some(map.next_value_seed(KindSeed)?);
                }
                Field::Metadata => {
                    once(metadata.is_some(), "metadata")?;
                    metadata = Some(map.next_value()?);
                }
                Field::Spec => {
                    once(spec.is_some(), "spec")?;
                    spec = Some(match kind {
                        Some(Kind::ModelAdapter) => Spec::Adapter(map.next_value()?),
                        Some(Kind::PodAutoscaler) => Spec::Autoscaler(map.next_value()?),
                        None => Spec::Pending(map.next_value()?),
                    });
                }
                Field::Status => {
                    once(seen_status, "status")?;
                    seen_status = true;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let api_version = api_version.ok_or_else(|| de::Error::missing_field("apiVersion"))?;
        let kind = kind.ok_or_else(|| de::Error::missing_field("kind"))?;
        let metadata = metadata.ok_or_else(|| de::Error::missing_field("metadata"))?;
        let spec = spec.ok_or_else(|| de::Error::missing_field("spec"))?;
        assemble(kind, api_version, metadata, spec)
    }
}

/// The document from its parts; a `spec` that came before `kind` is parsed now.
fn assemble<E: de::Error>(
    kind: Kind,
    api_version: String,
    metadata: ObjectMeta,
    spec: Spec,
) -> Result<Resource, E> {
    Ok(match (kind, spec) {
        (Kind::ModelAdapter, Spec::Adapter(spec)) => Resource::ModelAdapter(ModelAdapter {
            api_version,
            metadata,
            spec,
        }),
        (Kind::ModelAdapter, Spec::Pending(value)) => Resource::ModelAdapter(ModelAdapter {
            api_version,
            metadata,
            spec: late_spec(value)?,
        }),
        (Kind::PodAutoscaler, Spec::Autoscaler(spec)) => Resource::PodAutoscaler(PodAutoscaler {
            api_version,
            metadata,
            spec: *spec,
        }),
        (Kind::PodAutoscaler, Spec::Pending(value)) => Resource::PodAutoscaler(PodAutoscaler {
            api_version,
            metadata,
            spec: late_spec(value)?,
        }),
        // `spec` is parsed in place only once `kind` is known, and `kind` is read once.
        (Kind::ModelAdapter, Spec::Autoscaler(_)) | (Kind::PodAutoscaler, Spec::Adapter(_)) => {
            return Err(E::custom("spec does not match kind"));
        }
    })
}

/// An error for a key written twice.
fn once<E: de::Error>(seen: bool, field: &'static str) -> Result<(), E> {
    if seen {
        Err(E::duplicate_field(field))
    } else {
        Ok(())
    }
}

/// Parses a `spec` that came before `kind`; its errors are prefixed with `spec`.
fn late_spec<T: serde::de::DeserializeOwned, E: de::Error>(
    value: serde_yaml_ng::Value,
) -> Result<T, E> {
    T::deserialize(value).map_err(|e| E::custom(format!("spec: {e}")))
}
