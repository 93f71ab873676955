//! Where the extension-header walk (`headers::parse_v6`) says the fields a
//! reassembler and a Parameter Problem need are: the Fragment header, the
//! Next Header field naming it, and the Next Header field naming the upper
//! layer (RFC 8200 sections 4 and 4.5, RFC 4443 section 3.4). Packets are
//! written out byte by byte here.

use clat_xlat::headers::parse_v6;

/// An IPv6 header with Next Header `nh` and `rest` after it.
fn packet(nh: u8, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    p.extend_from_slice(&[nh, 64]);
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8].repeat(4)); // source
    p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8].repeat(4)); // destination
    p.extend_from_slice(rest);
    p
}

#[test]
fn no_extension_headers_name_the_upper_layer_at_byte_6() {
    let p = packet(17, &[0; 8]);
    let v = parse_v6(&p, false).unwrap();
    assert_eq!((v.proto, v.proto_at, v.frag), (17, 6, None));
}

#[test]
fn fragment_header_after_hop_by_hop_and_destination_options() {
    // Hop-by-Hop (8 bytes, Next Header 60), Destination Options (16 bytes,
    // Next Header 44), Fragment (Next Header 17, offset 0, M, ident
    // 0x12345678), 8 bytes of UDP.
    let mut rest = vec![60, 0, 1, 4, 0, 0, 0, 0];
    rest.extend_from_slice(&[44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    rest.extend_from_slice(&[17, 0, 0x00, 0x01, 0x12, 0x34, 0x56, 0x78]);
    rest.extend_from_slice(&[0; 8]);
    let p = packet(0, &rest);
    let v = parse_v6(&p, false).unwrap();
    let f = v.frag.unwrap();
    assert_eq!((f.off, f.more, f.id), (0, true, 0x5678));
    assert_eq!(f.at, 40 + 8 + 16);
    assert_eq!(f.named_at, 48, "the Destination Options header names it");
    assert_eq!(&p[f.at + 4..f.at + 8], &[0x12, 0x34, 0x56, 0x78]);
    assert_eq!((v.proto, v.proto_at), (17, f.at));
    // Directly after the fixed header: named by byte 6.
    let p = packet(44, &[58, 0, 0x00, 0x08, 0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8]);
    let v = parse_v6(&p, false).unwrap();
    let f = v.frag.unwrap();
    assert_eq!((f.at, f.named_at, f.off, f.more), (40, 6, 1, false));
}

#[test]
fn unknown_next_header_after_destination_options_is_pointed_at() {
    // Destination Options (Next Header 253, experimental) then 8 bytes.
    let p = packet(60, &[253, 0, 1, 4, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    let v = parse_v6(&p, false).unwrap();
    assert_eq!((v.proto, v.proto_at), (253, 40));
    assert_eq!(p[v.proto_at], 253);
}
