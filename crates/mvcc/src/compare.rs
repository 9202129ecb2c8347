//! Transaction guards (etcd's `applyCompare` / `compareKV`).

use std::cmp::Ordering;

use crate::KeyValue;
use crate::request::{Compare, CompareResult, CompareTarget};

/// Whether `kv` satisfies `c` (a missing key is compared as the all-zero `KeyValue`).
pub(crate) fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let order = match &c.target {
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
        CompareTarget::CreateRevision(r) => kv.create_revision.cmp(r),
        CompareTarget::ModRevision(r) => kv.mod_revision.cmp(r),
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Lease(l) => kv.lease.cmp(l),
    };
    match c.result {
        CompareResult::Equal => order == Ordering::Equal,
        CompareResult::NotEqual => order != Ordering::Equal,
        CompareResult::Greater => order == Ordering::Greater,
        CompareResult::Less => order == Ordering::Less,
    }
}

/// Whether the key-values a compare's range found satisfy it: every one must; with none, a value
/// comparison fails and the others compare the zero `KeyValue`.
pub(crate) fn compare_found(c: &Compare, kvs: &[KeyValue]) -> bool {
    if kvs.is_empty() {
        if matches!(c.target, CompareTarget::Value(_)) {
            return false;
        }
        return compare_kv(c, &KeyValue::default());
    }
    kvs.iter().all(|kv| compare_kv(c, kv))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(version: i64, value: &str) -> KeyValue {
        KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 5,
            version,
            value: value.into(),
            lease: 7,
        }
    }

    #[test]
    fn compares_each_target() {
        let c = |result, target| Compare::new("k", result, target);
        let kv = kv(3, "b");
        assert!(compare_kv(
            &c(CompareResult::Equal, CompareTarget::Version(3)),
            &kv
        ));
        assert!(compare_kv(
            &c(CompareResult::Greater, CompareTarget::CreateRevision(1)),
            &kv
        ));
        assert!(compare_kv(
            &c(CompareResult::Less, CompareTarget::ModRevision(6)),
            &kv
        ));
        assert!(compare_kv(
            &c(CompareResult::NotEqual, CompareTarget::Lease(0)),
            &kv
        ));
        assert!(compare_kv(
            &c(CompareResult::Greater, CompareTarget::Value(b"a".to_vec())),
            &kv
        ));
        assert!(!compare_kv(
            &c(CompareResult::Less, CompareTarget::Value(b"b".to_vec())),
            &kv
        ));
    }

    #[test]
    fn missing_keys_compare_as_zero_except_values() {
        let c = |result, target| Compare::new("k", result, target);
        assert!(compare_found(
            &c(CompareResult::Equal, CompareTarget::Version(0)),
            &[]
        ));
        assert!(compare_found(
            &c(CompareResult::Equal, CompareTarget::CreateRevision(0)),
            &[]
        ));
        assert!(compare_found(
            &c(CompareResult::Less, CompareTarget::ModRevision(1)),
            &[]
        ));
        assert!(compare_found(
            &c(CompareResult::Equal, CompareTarget::Lease(0)),
            &[]
        ));
        assert!(!compare_found(
            &c(CompareResult::Equal, CompareTarget::Value(vec![])),
            &[]
        ));
        assert!(!compare_found(
            &c(CompareResult::NotEqual, CompareTarget::Value(vec![])),
            &[]
        ));
    }

    #[test]
    fn ranges_need_every_key_to_match() {
        let c = Compare::new("k", CompareResult::Greater, CompareTarget::Version(1));
        assert!(compare_found(&c, &[kv(2, "a"), kv(3, "b")]));
        assert!(!compare_found(&c, &[kv(2, "a"), kv(1, "b")]));
    }
}
