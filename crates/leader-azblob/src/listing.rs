//! Reads the XML answer of List Blobs: blob names, lease status, and the continuation marker.
//!
//! The answer's layout is fixed and the names this store writes use only letters, digits and
//! `. _ - : /`, so a small scanner does; it still decodes XML's five entities.

/// One `<Blob>` of a listing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    pub name: String,
    /// `LeaseStatus` is `locked`: someone holds the blob's lease.
    pub locked: bool,
}

/// The blobs of one page and the marker of the next page, if any.
pub(crate) fn parse(xml: &str) -> (Vec<Listed>, Option<String>) {
    let mut blobs = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<Blob>") {
        let after = &rest[start + "<Blob>".len()..];
        let end = after.find("</Blob>").unwrap_or(after.len());
        let body = &after[..end];
        if let Some(name) = element(body, "Name") {
            let locked = element(body, "LeaseStatus").is_some_and(|s| s == "locked");
            blobs.push(Listed { name, locked });
        }
        rest = &after[end..];
    }
    let marker = element(xml, "NextMarker").filter(|m| !m.is_empty());
    (blobs, marker)
}

fn element(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(unescape(&xml[start..start + len]))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_lease_status_and_marker() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://x/" ContainerName="c"><Prefix>a</Prefix><Blobs><Blob><Name>a1</Name><Properties><Etag>0x1</Etag><LeaseStatus>locked</LeaseStatus><LeaseState>leased</LeaseState></Properties></Blob><Blob><Name>a&amp;2</Name><Properties><LeaseStatus>unlocked</LeaseStatus></Properties></Blob></Blobs><NextMarker>m1</NextMarker></EnumerationResults>"#;
        let (blobs, marker) = parse(xml);
        assert_eq!(
            blobs,
            vec![Listed { name: "a1".into(), locked: true }, Listed { name: "a&2".into(), locked: false }]
        );
        assert_eq!(marker.as_deref(), Some("m1"));
        let (blobs, marker) = parse("<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>");
        assert!(blobs.is_empty() && marker.is_none());
    }
}
