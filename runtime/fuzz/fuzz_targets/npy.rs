//! `.npy` arrays from recordings and imports, as every element type the
//! runtime reads. Whatever decodes re-encodes and decodes to the same
//! shape and bits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offramp_runtime::npy::{decode, encode, Element};

fn round_trip<T: Element>(data: &[u8], bits: impl Fn(&T) -> u64) {
    if let Ok((shape, values)) = decode::<T>(data) {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "{shape:?}");
        let (shape2, values2) = decode::<T>(&encode(&shape, &values)).expect("re-encoded decodes");
        assert_eq!(shape2, shape);
        assert!(values.iter().zip(&values2).all(|(a, b)| bits(a) == bits(b)));
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<u8>(data, |x| *x as u64);
    round_trip::<f32>(data, |x| x.to_bits() as u64);
    round_trip::<i32>(data, |x| *x as u32 as u64);
    round_trip::<i64>(data, |x| *x as u64);
});
