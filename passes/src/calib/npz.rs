//! A reader for NumPy's `.npz` archives: a zip of `.npy` members, stored (`np.savez`) or deflated
//! (`np.savez_compressed`), with zip64 records as NumPy writes them. CRCs are checked.

use super::npy::{parse_npy, NdArray};
use super::CalibError;

const EOCD: u32 = 0x0605_4b50;
const EOCD64: u32 = 0x0606_4b50;
const EOCD64_LOCATOR: u32 = 0x0706_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const LOCAL: u32 = 0x0403_4b50;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Every member of an `.npz` archive, by name without the `.npy` suffix, in archive order.
pub fn parse_npz(bytes: &[u8], file: &str) -> Result<Vec<(String, NdArray)>, CalibError> {
    let bad = |message: &str| CalibError::BadArray {
        what: file.to_string(),
        message: message.to_string(),
    };
    let corrupt = || bad("not a valid .npz (zip) archive");
    // The end-of-central-directory record is in the last 64 KiB + 22 bytes.
    let lo = bytes.len().saturating_sub(65_557);
    let eocd = (lo..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(bytes, i) == Some(EOCD))
        .ok_or_else(corrupt)?;
    let mut entries = u16_at(bytes, eocd + 10).ok_or_else(corrupt)? as u64;
    let mut cd_offset = u32_at(bytes, eocd + 16).ok_or_else(corrupt)? as u64;
    if entries == 0xffff || cd_offset == 0xffff_ffff {
        // Zip64: the locator sits right before the classic record.
        let loc = eocd.checked_sub(20).ok_or_else(corrupt)?;
        if u32_at(bytes, loc) != Some(EOCD64_LOCATOR) {
            return Err(corrupt());
        }
        let rec = u64_at(bytes, loc + 8).ok_or_else(corrupt)? as usize;
        if u32_at(bytes, rec) != Some(EOCD64) {
            return Err(corrupt());
        }
        entries = u64_at(bytes, rec + 32).ok_or_else(corrupt)?;
        cd_offset = u64_at(bytes, rec + 48).ok_or_else(corrupt)?;
    }
    let mut at = usize::try_from(cd_offset).map_err(|_| corrupt())?;
    let mut out = Vec::new();
    for _ in 0..entries {
        if u32_at(bytes, at) != Some(CENTRAL) {
            return Err(corrupt());
        }
        let method = u16_at(bytes, at + 10).ok_or_else(corrupt)?;
        let crc = u32_at(bytes, at + 16).ok_or_else(corrupt)?;
        let mut comp = u32_at(bytes, at + 20).ok_or_else(corrupt)? as u64;
        let mut size = u32_at(bytes, at + 24).ok_or_else(corrupt)? as u64;
        let name_len = u16_at(bytes, at + 28).ok_or_else(corrupt)? as usize;
        let extra_len = u16_at(bytes, at + 30).ok_or_else(corrupt)? as usize;
        let comment_len = u16_at(bytes, at + 32).ok_or_else(corrupt)? as usize;
        let mut local = u32_at(bytes, at + 42).ok_or_else(corrupt)? as u64;
        let name = bytes.get(at + 46..at + 46 + name_len).ok_or_else(corrupt)?;
        let name = String::from_utf8_lossy(name).to_string();
        let extra = bytes
            .get(at + 46 + name_len..at + 46 + name_len + extra_len)
            .ok_or_else(corrupt)?;
        // Zip64 extra field: the 0xffffffff fields, in order.
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = u16_at(extra, e).ok_or_else(corrupt)?;
            let len = u16_at(extra, e + 2).ok_or_else(corrupt)? as usize;
            if id == 1 {
                let mut f = e + 4;
                for field in [&mut size, &mut comp, &mut local] {
                    if *field == 0xffff_ffff {
                        *field = u64_at(extra, f).ok_or_else(corrupt)?;
                        f += 8;
                    }
                }
            }
            e += 4 + len;
        }
        at += 46 + name_len + extra_len + comment_len;
        let local = usize::try_from(local).map_err(|_| corrupt())?;
        if u32_at(bytes, local) != Some(LOCAL) {
            return Err(corrupt());
        }
        let lname = u16_at(bytes, local + 26).ok_or_else(corrupt)? as usize;
        let lextra = u16_at(bytes, local + 28).ok_or_else(corrupt)? as usize;
        let start = local + 30 + lname + lextra;
        let comp = usize::try_from(comp).map_err(|_| corrupt())?;
        let size = usize::try_from(size).map_err(|_| corrupt())?;
        let data = bytes
            .get(start..start.saturating_add(comp))
            .ok_or_else(|| bad(&format!("member '{name}' is truncated")))?;
        let member = format!("{file}:{name}");
        let raw = match method {
            0 => std::borrow::Cow::Borrowed(data),
            8 => std::borrow::Cow::Owned(
                miniz_oxide::inflate::decompress_to_vec_with_limit(data, size)
                    .map_err(|_| bad(&format!("member '{name}' does not inflate")))?,
            ),
            m => {
                return Err(bad(&format!(
                    "member '{name}' uses zip compression method {m} (only stored and deflate are supported)"
                )))
            }
        };
        if raw.len() != size || crc32(&raw) != crc {
            return Err(bad(&format!("member '{name}' fails its CRC check")));
        }
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        out.push((key, parse_npy(&raw, &member)?));
    }
    Ok(out)
}

/// CRC-32 (IEEE), table-driven.
fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    let mut c = !0u32;
    for &b in data {
        c = table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Write a stored (uncompressed) `.npz` archive of `.npy` members (tests and tools).
pub fn write_npz(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in members {
        let name = format!("{name}.npy");
        let offset = out.len() as u32;
        let crc = crc32(data);
        let header = |sig: u32| {
            let mut h = sig.to_le_bytes().to_vec();
            if sig == CENTRAL {
                h.extend_from_slice(&20u16.to_le_bytes());
            }
            h.extend_from_slice(&20u16.to_le_bytes()); // version needed
            h.extend_from_slice(&0u16.to_le_bytes()); // flags
            h.extend_from_slice(&0u16.to_le_bytes()); // method: stored
            h.extend_from_slice(&0u32.to_le_bytes()); // time, date
            h.extend_from_slice(&crc.to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // extra
            if sig == CENTRAL {
                h.extend_from_slice(&[0u8; 6]); // comment length, disk, internal attrs
                h.extend_from_slice(&0u32.to_le_bytes()); // external attrs
                h.extend_from_slice(&offset.to_le_bytes());
            }
            h.extend_from_slice(name.as_bytes());
            h
        };
        out.extend(header(LOCAL));
        out.extend_from_slice(data);
        central.extend(header(CENTRAL));
    }
    let cd_offset = out.len() as u32;
    let cd_len = central.len() as u32;
    out.extend(central);
    out.extend_from_slice(&EOCD.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::super::npy::{write_npy_f32, write_npy_i64, ArrayData};
    use super::*;

    #[test]
    fn crc_known_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn stored_round_trip() {
        let z = write_npz(&[
            ("x", write_npy_f32(&[1, 2], &[0.5, 1.5])),
            ("ids", write_npy_i64(&[2], &[3, 4])),
        ]);
        let m = parse_npz(&z, "c.npz").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, "x");
        assert_eq!(m[0].1.data, ArrayData::Float(vec![0.5, 1.5]));
        assert_eq!(m[1].0, "ids");
        assert_eq!(m[1].1.data, ArrayData::Int(vec![3, 4]));
    }

    #[test]
    fn corrupt_archives_are_refused() {
        let mut z = write_npz(&[("x", write_npy_f32(&[2], &[1.0, 2.0]))]);
        let e = parse_npz(&z[..10], "c.npz").unwrap_err().to_string();
        assert!(e.contains("c.npz") && e.contains("zip"), "{e}");
        // Flip a data byte (local header 35 bytes, .npy header 64): the CRC catches it.
        z[30 + "x.npy".len() + 64 + 1] ^= 0x55;
        let e = parse_npz(&z, "c.npz").unwrap_err().to_string();
        assert!(e.contains("member 'x.npy' fails its CRC check"), "{e}");
    }
}
