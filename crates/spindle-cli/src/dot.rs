//! A numeric kernel as a named heterogeneous thread: the dot product of two `f32`
//! vectors in three variants, `generic` (a scalar loop), `avx2` (FMA on 8 lanes) and
//! `avx512f` (FMA on 16 lanes). `spindle::spawn_named("dot", ..)` runs the most
//! specific one the chosen core's type can run.
//!
//! The variants add in different orders, so their results agree within rounding:
//! [`tolerance`] bounds the difference.

use std::sync::Arc;

/// The argument of the `dot` thread: the two vectors (shared, not copied per spawn).
pub type DotArg = (Arc<[f32]>, Arc<[f32]>);

/// The `generic` variant: a plain loop in index order.
pub fn dot_generic(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut sum = 0.0f32;
    for i in 0..n {
        sum += a[i] * b[i];
    }
    sum
}

/// The `avx2` variant: four 8-lane FMA accumulators.
///
/// # Safety
///
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8k + 8 <= n: both loads are in bounds (unaligned loads).
            unsafe {
                let x = _mm256_loadu_ps(pa.add(i + 8 * k));
                let y = _mm256_loadu_ps(pb.add(i + 8 * k));
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
        }
        i += 32;
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds 8 f32 (unaligned store).
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
    let mut sum: f32 = lanes.iter().sum();
    while i < n {
        sum += a[i] * b[i];
        i += 1;
    }
    sum
}

/// The `avx512f` variant: four 16-lane FMA accumulators.
///
/// # Safety
///
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 16k + 16 <= n: both loads are in bounds (unaligned loads).
            unsafe {
                let x = _mm512_loadu_ps(pa.add(i + 16 * k));
                let y = _mm512_loadu_ps(pb.add(i + 16 * k));
                *acc = _mm512_fmadd_ps(x, y, *acc);
            }
        }
        i += 64;
    }
    let v = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let mut sum = _mm512_reduce_add_ps(v);
    while i < n {
        sum += a[i] * b[i];
        i += 1;
    }
    sum
}

/// How far two variants' results may differ: each rounds at most a few ulps of the
/// largest partial sum per addition, bounded by `n * eps * sum |a_i b_i|` (with slack).
pub fn tolerance(a: &[f32], b: &[f32]) -> f32 {
    let mag: f32 = a.iter().zip(b).map(|(x, y)| (x * y).abs()).sum();
    2.0 * (a.len() as f32 + 1.0) * f32::EPSILON * mag + f32::MIN_POSITIVE
}

#[spindle::thread(name = "dot", variant = "generic")]
fn dot_thread_generic(arg: DotArg) -> f32 {
    dot_generic(&arg.0, &arg.1)
}

#[cfg(target_arch = "x86_64")]
#[spindle::thread(name = "dot", variant = "avx2+fma")]
fn dot_thread_avx2(arg: DotArg) -> f32 {
    // SAFETY: spindle runs this variant only on cores whose type has AVX2 and FMA.
    unsafe { dot_avx2(&arg.0, &arg.1) }
}

#[cfg(target_arch = "x86_64")]
#[spindle::thread(name = "dot", variant = "avx512f")]
fn dot_thread_avx512(arg: DotArg) -> f32 {
    // SAFETY: spindle runs this variant only on cores whose type has AVX-512F.
    unsafe { dot_avx512(&arg.0, &arg.1) }
}

/// A named thread that does nothing: `spawn_named` against `spawn` of an empty closure.
#[spindle::thread(name = "nop", variant = "generic")]
fn nop(_: ()) {}

/// A dot kernel as a plain function.
pub type Kernel = fn(&[f32], &[f32]) -> f32;

/// The variants this CPU can run, by name, as plain functions.
pub fn runnable_variants() -> Vec<(&'static str, Kernel)> {
    let mut v: Vec<(&'static str, Kernel)> = vec![("generic", dot_generic)];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA were just detected.
            v.push(("avx2+fma", |a, b| unsafe { dot_avx2(a, b) }));
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was just detected.
            v.push(("avx512f", |a, b| unsafe { dot_avx512(a, b) }));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every variant this CPU can run agrees with the generic one within rounding,
        /// for every length (tails included).
        #[test]
        fn variants_agree(v in proptest::collection::vec((-100.0f32..100.0, -100.0f32..100.0), 0..300)) {
            let (a, b): (Vec<f32>, Vec<f32>) = v.into_iter().unzip();
            let want = dot_generic(&a, &b);
            let tol = tolerance(&a, &b);
            for (name, f) in runnable_variants() {
                let got = f(&a, &b);
                prop_assert!((got - want).abs() <= tol, "{name}: {got} vs {want} (tol {tol})");
            }
        }
    }

    #[test]
    fn exact_on_small_integers() {
        let a: Vec<f32> = (0..1000).map(|i| (i % 7) as f32).collect();
        let b: Vec<f32> = (0..1000).map(|i| (i % 5) as f32 - 2.0).collect();
        let want = dot_generic(&a, &b);
        for (name, f) in runnable_variants() {
            assert_eq!(f(&a, &b), want, "{name}");
        }
    }

    #[test]
    fn spawn_named_picks_per_core_type_and_agrees() {
        let rt = spindle::Runtime::builder()
            .core_type(spindle::CoreType::new("big").cores(1))
            .core_type(
                spindle::CoreType::new("lite")
                    .cores(1)
                    .features(["avx2", "fma"]),
            )
            .core_type(spindle::CoreType::new("plain").cores(1).features(["sse2"]))
            .pin(false)
            .build()
            .unwrap();
        let a: Arc<[f32]> = (0..777).map(|i| (i as f32).sin()).collect();
        let b: Arc<[f32]> = (0..777).map(|i| (i as f32).cos()).collect();
        let want = dot_generic(&a, &b);
        let tol = tolerance(&a, &b);
        let big = if spindle::topology::has_feature("avx512f") == Some(true) {
            "avx512f"
        } else {
            "avx2+fma"
        };
        rt.block_on(|| {
            for (ty, variant) in [("big", big), ("lite", "avx2+fma"), ("plain", "generic")] {
                let h = spindle::spawn_named::<DotArg, f32>(
                    "dot",
                    (a.clone(), b.clone()),
                    spindle::Builder::new().core_type(ty),
                )
                .unwrap();
                assert_eq!(h.variant(), Some(variant), "on {ty}");
                let got = h.join().unwrap();
                assert!((got - want).abs() <= tol, "{ty}: {got} vs {want}");
            }
        });
    }
}
