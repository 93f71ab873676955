//! Panics through a chain of frames and catches it, 100 times, as the JNI
//! bridge relies on (a panic must never cross the JNI boundary).

use std::hint::black_box;
use std::panic;

#[inline(never)]
fn deep(n: u32) -> u32 {
    if n == 0 {
        panic!("deliberate panic, to be caught");
    }
    deep(black_box(n - 1)) + 1
}

/// How many of 100 panics, 20 frames deep each, catch_unwind caught.
#[unsafe(no_mangle)]
pub extern "C" fn Java_unwind_Test_caught() -> i32 {
    let mut caught = 0;
    for i in 0..100 {
        if i == 1 {
            panic::set_hook(Box::new(|_| {})); // print the first one only
        }
        if panic::catch_unwind(|| deep(black_box(20))).is_err() {
            caught += 1;
        }
    }
    let _ = panic::take_hook();
    caught
}
