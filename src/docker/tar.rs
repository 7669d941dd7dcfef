//! The few-file tar archives `install_certificates` uploads (`PUT /containers/<c>/archive`):
//! regular files only, mode 0644, owner root, like Python's `tarfile` defaults in HaRP. Plain
//! ustar is all Docker needs for short paths, so no crate.

const BLOCK: usize = 512;
const NAME_LEN: usize = 100;
const PREFIX_LEN: usize = 155;

/// A path longer than ustar can hold (155 + 100 bytes, split at a `/`).
#[derive(Debug, PartialEq, Eq)]
pub struct PathTooLong(pub String);

/// Archive of `(path inside the archive, contents)` entries, with modification time `mtime`
/// (seconds since the epoch).
pub fn archive(files: &[(String, Vec<u8>)], mtime: u64) -> Result<Vec<u8>, PathTooLong> {
    let mut out = Vec::new();
    for (path, contents) in files {
        out.extend_from_slice(&header(path, contents.len() as u64, mtime)?);
        out.extend_from_slice(contents);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }
    // End of archive: two zero blocks.
    out.resize(out.len() + 2 * BLOCK, 0);
    Ok(out)
}

fn header(path: &str, size: u64, mtime: u64) -> Result<[u8; BLOCK], PathTooLong> {
    let mut h = [0u8; BLOCK];
    let (prefix, name) = split_path(path).ok_or_else(|| PathTooLong(path.to_string()))?;
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0); // uid
    octal(&mut h[116..124], 0); // gid
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = b'0'; // regular file
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    // The checksum is computed with its own field read as spaces.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let digits = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(digits.as_bytes());
    Ok(h)
}

/// `(prefix, name)` for ustar: the name alone when it fits, else split at a `/`.
fn split_path(path: &str) -> Option<(&str, &str)> {
    if path.len() <= NAME_LEN {
        return Some(("", path));
    }
    path.match_indices('/')
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .find(|(prefix, name)| prefix.len() <= PREFIX_LEN && name.len() <= NAME_LEN)
}

/// Zero-padded octal, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let digits = format!("{value:0width$o}");
    field[..width].copy_from_slice(&digits.as_bytes()[digits.len() - width..]);
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_one_file() {
        let tar = archive(&[("certs/frp/ca.crt".into(), b"hello".to_vec())], 0o1234).unwrap();
        assert_eq!(tar.len(), BLOCK * 4); // header, one data block, two end blocks
        assert_eq!(&tar[..16], b"certs/frp/ca.crt");
        assert_eq!(&tar[100..108], b"0000644\0");
        assert_eq!(&tar[124..136], b"00000000005\0");
        assert_eq!(&tar[136..148], b"00000001234\0");
        assert_eq!(&tar[257..263], b"ustar\0");
        assert_eq!(&tar[BLOCK..BLOCK + 5], b"hello");
        // Checksum: sum of the header with the field as spaces.
        let mut h = tar[..BLOCK].to_vec();
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(&tar[148..156], format!("{sum:06o}\0 ").as_bytes());
        assert!(tar[BLOCK * 2..].iter().all(|&b| b == 0));
    }

    #[test]
    fn long_paths_use_the_prefix() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let tar = archive(&[(long, Vec::new())], 0).unwrap();
        assert_eq!(&tar[..90], "f".repeat(90).as_bytes());
        assert_eq!(&tar[345..465], "d".repeat(120).as_bytes());
        assert!(archive(&[("x".repeat(300), Vec::new())], 0).is_err());
    }
}
