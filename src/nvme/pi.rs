//! End-to-end protection information checksums: the 16-bit guard (CRC-16 T10-DIF,
//! polynomial 8BB7h) and the 64-bit guard (CRC-64 NVMe, polynomial AD93D23594C93659h,
//! reflected), as the NVM Command Set specification defines them (its 64b CRC test
//! cases and T10's 16-bit codewords are this module's tests). Both can be continued over several buffers (a
//! block's data, then the metadata bytes before its PI field), so no buffer is copied.
//!
//! Table-driven, one byte at a time: fast enough for an emulator, and small. (No
//! well-kept crate on the allowed list computes either; the `crc` crate is not among
//! this project's dependencies.)

#![forbid(unsafe_code)]

/// CRC-16 T10-DIF of `data`, continuing from `crc` (0 to start).
pub fn crc16_t10dif(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        crc = (crc << 8) ^ CRC16_TABLE[(((crc >> 8) as u8) ^ b) as usize];
    }
    crc
}

/// CRC-64 NVMe of `data`, continuing from `crc` (0 to start: the initial value and
/// the final inversion are applied inside, as for the spec's "computed over" wording).
pub fn crc64_nvme(crc: u64, data: &[u8]) -> u64 {
    let mut c = !crc;
    for &b in data {
        c = (c >> 8) ^ CRC64_TABLE[((c as u8) ^ b) as usize];
    }
    !c
}

const CRC16_POLY: u16 = 0x8bb7;
/// The reflected form of AD93D23594C93659h.
const CRC64_POLY_REFLECTED: u64 = 0x9a6c_9329_ac4b_c9b5;

const CRC16_TABLE: [u16; 256] = crc16_table();
const CRC64_TABLE: [u64; 256] = crc64_table();

const fn crc16_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u16) << 8;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000 != 0 {
                (c << 1) ^ CRC16_POLY
            } else {
                c << 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

const fn crc64_table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ CRC64_POLY_REFLECTED
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(n: usize) -> Vec<u8> {
        (0..n).map(|i| i as u8).collect()
    }
    fn dec(n: usize) -> Vec<u8> {
        (0..n).map(|i| 0xff - i as u8).collect()
    }

    #[test]
    fn crc16_t10dif_vectors() {
        // The catalogue check value, and T10's five 32-byte codewords (the end-to-end
        // data protection proposal's test cases).
        assert_eq!(crc16_t10dif(0, b"123456789"), 0xd0db);
        assert_eq!(crc16_t10dif(0, &[0u8; 32]), 0x0000);
        assert_eq!(crc16_t10dif(0, &[0xffu8; 32]), 0xa293);
        assert_eq!(crc16_t10dif(0, &inc(32)), 0x0224);
        let mut ffff = [0u8; 32];
        ffff[..2].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(crc16_t10dif(0, &ffff), 0x21b8);
        assert_eq!(crc16_t10dif(0, &dec(32)), 0xa0b7);
    }

    #[test]
    fn crc64_nvme_vectors() {
        // The catalogue check value, and the spec's 64b CRC test cases (4 KiB).
        assert_eq!(crc64_nvme(0, b"123456789"), 0xae8b_1486_0a79_9888);
        assert_eq!(crc64_nvme(0, &[0u8; 4096]), 0x6482_d367_eb22_b64e);
        assert_eq!(crc64_nvme(0, &[0xffu8; 4096]), 0xc0dd_ba73_02ec_a3ac);
        assert_eq!(crc64_nvme(0, &inc(4096)), 0x3e72_9f5f_6750_449c);
        assert_eq!(crc64_nvme(0, &dec(4096)), 0x9a2d_f64b_8e9e_517e);
    }

    #[test]
    fn both_continue_over_split_buffers() {
        let data = inc(4096 + 24);
        for cut in [0, 1, 511, 4096, 4100] {
            let (a, b) = data.split_at(cut);
            assert_eq!(crc16_t10dif(crc16_t10dif(0, a), b), crc16_t10dif(0, &data));
            assert_eq!(crc64_nvme(crc64_nvme(0, a), b), crc64_nvme(0, &data));
        }
    }
}
