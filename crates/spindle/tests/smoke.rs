#[test]
fn smoke() {
    let v = spindle::run(|| {
        let h = spindle::spawn(|| 40 + 2);
        let mut n = 0;
        for _ in 0..10 {
            spindle::yield_now();
            n += 1;
        }
        h.join().unwrap() + n
    });
    assert_eq!(v, 52);
}
