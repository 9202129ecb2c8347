//! bbolt files as `ferrocdutl snapshot restore` reads them (`bbolt::Db`): raw bytes, and a
//! file written by `bbolt::write_db` then damaged. Open, list buckets, walk every bucket and
//! the freelist: an error or the data, never a panic or an endless walk. Undamaged, the file
//! reads back as written.

#![no_main]

use std::collections::BTreeMap;
use std::io::Cursor;

use arbitrary::Arbitrary;
use bbolt::{Db, MemSource, ReadError, write_db};
use ferrocd_fuzz::{Damage, damage};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(Vec<u8>),
    Written {
        data: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>,
        damages: Vec<Damage>,
    },
}

fn read_all(bytes: Vec<u8>) -> Result<MemSource, ReadError> {
    let len = bytes.len();
    let mut db = Db::open(Cursor::new(bytes))?;
    let _ = db.free_pages();
    let mut out = MemSource::new();
    let mut entries = 0usize;
    for bucket in db.buckets()? {
        let mut kvs = BTreeMap::new();
        db.for_each::<ReadError>(&bucket, |k, v| {
            entries += 1;
            // Each entry takes at least an element header somewhere in the file.
            assert!(entries <= len, "more entries than bytes");
            kvs.insert(k.to_vec(), v.to_vec());
            Ok(())
        })?;
        out.insert(bucket.name.clone(), kvs);
    }
    Ok(out)
}

fuzz_target!(|input: Input| {
    match input {
        Input::Raw(bytes) => {
            let _ = read_all(bytes);
        }
        Input::Written { data, damages } => {
            let mut bytes = Vec::new();
            if write_db(&data, &mut bytes).is_err() {
                // Empty names or keys are refused by the writer.
                return;
            }
            let undamaged = damages.is_empty();
            damage(&mut bytes, &damages);
            let read = read_all(bytes);
            if undamaged {
                match read {
                    Ok(got) => assert_eq!(got, data),
                    Err(e) => panic!("a written file does not read back: {e}"),
                }
            }
        }
    }
});
