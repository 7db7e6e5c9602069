//! `OciLayout`: tags and manifests in an OCI image-layout directory (`oci-layout`, `index.json`, `blobs/`).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::{
    Descriptor, Digest, Manifest, OciError, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST,
};

/// The annotation that carries a tag in `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// An OCI image layout on disk.
#[derive(Clone, Debug)]
pub struct OciLayout {
    root: PathBuf,
}

impl OciLayout {
    /// Creates (or reuses) a layout: `oci-layout`, an empty `index.json`, `blobs/sha256/`.
    pub fn init(dir: impl AsRef<Path>) -> Result<OciLayout, OciError> {
        let root = dir.as_ref().to_path_buf();
        let io = |what: &str| {
            let root = root.clone();
            let what = what.to_string();
            move |e: std::io::Error| OciError::Layout {
                path: root,
                detail: what,
                source: Some(e),
            }
        };
        fs::create_dir_all(root.join("blobs").join("sha256"))
            .map_err(io("cannot create blobs/sha256"))?;
        if !root.join("oci-layout").exists() {
            write_atomic(
                &root.join("oci-layout"),
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )?;
        }
        if !root.join("index.json").exists() {
            let index =
                json!({"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX, "manifests": []});
            write_json(&root.join("index.json"), &index)?;
        }
        OciLayout::open(root)
    }

    /// Opens an existing layout, checking its `oci-layout` marker.
    pub fn open(dir: impl AsRef<Path>) -> Result<OciLayout, OciError> {
        let root = dir.as_ref().to_path_buf();
        let marker = root.join("oci-layout");
        let bytes = read(&marker)?;
        let version = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("imageLayoutVersion")?.as_str().map(str::to_string));
        if version.is_none() {
            return Err(OciError::Layout {
                path: marker,
                detail: "not an OCI layout marker (no imageLayoutVersion)".into(),
                source: None,
            });
        }
        let layout = OciLayout { root };
        layout.index()?;
        Ok(layout)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn index(&self) -> Result<Value, OciError> {
        let path = self.index_path();
        let bytes = read(&path)?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| OciError::Layout {
            path: path.clone(),
            detail: format!(
                "invalid JSON at line {}, column {}: {e}",
                e.line(),
                e.column()
            ),
            source: None,
        })?;
        if !value.get("manifests").is_some_and(Value::is_array) {
            return Err(OciError::Layout {
                path,
                detail: "index.json has no `manifests` array".into(),
                source: None,
            });
        }
        Ok(value)
    }

    /// Every tagged entry of `index.json`, in file order.
    pub fn tags(&self) -> Result<Vec<(String, Descriptor)>, OciError> {
        let index = self.index()?;
        let mut out = Vec::new();
        for entry in manifests(&index) {
            if let Some(tag) = ref_name(entry) {
                out.push((tag.to_string(), self.descriptor(entry)?));
            }
        }
        Ok(out)
    }

    /// The descriptor tagged `tag`, if any.
    pub fn resolve(&self, tag: &str) -> Result<Option<Descriptor>, OciError> {
        Ok(self
            .tags()?
            .into_iter()
            .find(|(t, _)| t == tag)
            .map(|(_, d)| d))
    }

    fn descriptor(&self, entry: &Value) -> Result<Descriptor, OciError> {
        serde_json::from_value(entry.clone()).map_err(|e| OciError::Layout {
            path: self.index_path(),
            detail: format!("invalid descriptor in manifests[]: {e}"),
            source: None,
        })
    }

    /// Where a blob lives: `blobs/<algorithm>/<hex>`.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// A blob's bytes, verified against its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, OciError> {
        let path = self.blob_path(digest);
        let bytes = read(&path)?;
        let actual = digest.same_algorithm_of(&bytes);
        if &actual != digest {
            return Err(OciError::LayoutDigestMismatch {
                path,
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// A manifest blob; its media type comes from the index entry, else the manifest's `mediaType`.
    pub fn read_manifest(&self, digest: &Digest) -> Result<Manifest, OciError> {
        let bytes = self.read_blob(digest)?;
        let from_index = manifests(&self.index()?)
            .filter(|e| e.get("digest").and_then(Value::as_str) == Some(digest.as_str()))
            .find_map(|e| {
                e.get("mediaType")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        let media_type = from_index
            .or_else(|| {
                serde_json::from_slice::<Value>(&bytes)
                    .ok()?
                    .get("mediaType")?
                    .as_str()
                    .map(str::to_string)
            })
            .ok_or_else(|| OciError::Layout {
                path: self.blob_path(digest),
                detail: "manifest media type is unknown (not in index.json, no mediaType field)"
                    .into(),
                source: None,
            })?;
        Ok(Manifest {
            bytes,
            media_type,
            digest: digest.clone(),
        })
    }

    /// Stores a blob (idempotent) and returns its sha256 digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Digest, OciError> {
        let digest = Digest::sha256_of(bytes);
        let path = self.blob_path(&digest);
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        Ok(digest)
    }

    /// Points `tag` at `descriptor`: the tag's entry is updated in place (its other fields kept,
    /// later duplicates dropped) or appended; every other entry and field is left as it was.
    pub fn set_tag(&self, tag: &str, descriptor: &Descriptor) -> Result<(), OciError> {
        if !super::valid_tag(tag) {
            return Err(OciError::InvalidReference {
                input: tag.to_string(),
                reason: "not a valid tag".into(),
            });
        }
        if !self.blob_path(&descriptor.digest).is_file() {
            return Err(OciError::Layout {
                path: self.blob_path(&descriptor.digest),
                detail: format!(
                    "cannot tag {tag}: blob {} is not in the layout",
                    descriptor.digest
                ),
                source: None,
            });
        }
        let mut index = self.index()?;
        let entries = index
            .get_mut("manifests")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| OciError::Layout {
                path: self.index_path(),
                detail: "index.json has no `manifests` array".into(),
                source: None,
            })?;
        let mut found = false;
        entries.retain_mut(|entry| {
            if ref_name(entry) != Some(tag) {
                return true;
            }
            if found {
                return false;
            }
            found = true;
            if let Some(obj) = entry.as_object_mut() {
                obj.insert(
                    "mediaType".into(),
                    Value::String(descriptor.media_type.clone()),
                );
                obj.insert(
                    "digest".into(),
                    Value::String(descriptor.digest.to_string()),
                );
                obj.insert("size".into(), Value::from(descriptor.size));
                // Embedded `data` would describe the old manifest.
                obj.remove("data");
            }
            true
        });
        if !found {
            let mut annotations = Map::new();
            annotations.insert(REF_NAME_ANNOTATION.into(), Value::String(tag.to_string()));
            entries.push(json!({
                "mediaType": descriptor.media_type,
                "digest": descriptor.digest,
                "size": descriptor.size,
                "annotations": annotations,
            }));
        }
        write_json(&self.index_path(), &index)
    }

    /// Writes a one-layer OCI image (config, layer, manifest blobs) and tags it.
    pub fn add_image(&self, tag: &str, config: &[u8], layer: &[u8]) -> Result<Manifest, OciError> {
        let config_digest = self.write_blob(config)?;
        let layer_digest = self.write_blob(layer)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_MANIFEST,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer_digest, "size": layer.len()}],
        });
        let bytes = serde_json::to_vec(&manifest).map_err(|e| OciError::Layout {
            path: self.root.clone(),
            detail: format!("cannot serialise manifest: {e}"),
            source: None,
        })?;
        self.write_blob(&bytes)?;
        let manifest = Manifest::new(bytes, MEDIA_TYPE_OCI_MANIFEST);
        self.set_tag(tag, &manifest.descriptor())?;
        Ok(manifest)
    }
}

fn manifests(index: &Value) -> impl Iterator<Item = &Value> {
    index
        .get("manifests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn ref_name(entry: &Value) -> Option<&str> {
    entry.get("annotations")?.get(REF_NAME_ANNOTATION)?.as_str()
}

/// Blobs and index files bagboy reads from a layout: manifests and indexes are far smaller.
const MAX_LAYOUT_FILE_BYTES: u64 = 64 << 20;

/// Read a layout file: a regular file (no symlink, device or FIFO a checkout could plant),
/// bounded.
fn read(path: &Path) -> Result<Vec<u8>, OciError> {
    crate::files::read_regular(path, MAX_LAYOUT_FILE_BYTES).map_err(|e| match e {
        crate::files::ReadError::Io(e) => OciError::Layout {
            path: path.to_path_buf(),
            detail: "cannot read".into(),
            source: Some(e),
        },
        other => OciError::Layout {
            path: path.to_path_buf(),
            detail: other.to_string(),
            source: None,
        },
    })
}

fn write_json(path: &Path, value: &Value) -> Result<(), OciError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| OciError::Layout {
        path: path.to_path_buf(),
        detail: format!("cannot serialise: {e}"),
        source: None,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Through the one atomic writer: exclusive temp file, fsync, rename, directory fsync.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    crate::files::write_atomic(path, bytes).map_err(|e| OciError::Layout {
        path: path.to_path_buf(),
        detail: "cannot write atomically".into(),
        source: Some(e),
    })
}
