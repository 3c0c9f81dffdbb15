//! The exchange-slot path has no read-modify-write instruction: this test disassembles
//! its own binary (which links the runtime) and inspects the compiled code of the slot
//! functions for a `lock` prefix, `xchg` with memory, or any other atomic RMW.
//!
//! Needs `objdump` (GNU binutils); `.ci/run` installs it.

use std::process::Command;

/// The functions of the slot path, as they appear (demangled) in the binary.
const SLOT_FUNCTIONS: &[&str] = &[
    "spindle::sched::handoff::<impl spindle::sched::core::Core>::take_in",
    "spindle::sched::handoff::<impl spindle::sched::core::Core>::send_out",
    "spindle::sched::exchange::Slots<T>::take",
    "spindle::sched::exchange::Slots<T>::offer",
];

/// Instruction mnemonics that are (or imply) an atomic read-modify-write.
fn is_rmw(insn: &str) -> bool {
    let mut words = insn.split_whitespace();
    let Some(op) = words.next() else { return false };
    if op == "lock" {
        return true;
    }
    let operands = words.collect::<Vec<_>>().join(" ");
    // `xchg` with a memory operand is implicitly locked; `cmpxchg`/`xadd` are RMWs.
    (op.starts_with("xchg") && operands.contains('('))
        || op.starts_with("cmpxchg")
        || op.starts_with("xadd")
}

/// Function name → its instructions, for every function of `bin` whose demangled name
/// contains one of `wanted`.
fn disassemble(bin: &std::path::Path, wanted: &[&str]) -> Vec<(String, Vec<String>)> {
    let out = Command::new("objdump")
        .args(["-d", "-C", "--no-show-raw-insn"])
        .arg(bin)
        .output()
        .expect("running objdump (install GNU binutils)");
    assert!(out.status.success(), "objdump failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut funcs: Vec<(String, Vec<String>)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in text.lines() {
        // A function header: `0000000000012340 <name>:`
        if let Some(name) = line
            .strip_suffix(">:")
            .and_then(|l| l.split_once(" <"))
            .map(|(_, n)| n)
        {
            current = if wanted.iter().any(|w| name.contains(w)) {
                funcs.push((name.to_owned(), Vec::new()));
                Some(funcs.len() - 1)
            } else {
                None
            };
            continue;
        }
        if let (Some(i), Some((_, insn))) = (current, line.split_once(":\t")) {
            funcs[i].1.push(insn.trim().to_owned());
        }
    }
    funcs
}

#[test]
fn slot_functions_have_no_read_modify_write_instruction() {
    // Use the runtime so that the slot functions are linked in.
    let rt = spindle::Runtime::builder().cores(2).build().unwrap();
    let moved = rt.block_on(|| spindle::spawn_on(1, || 7).join().unwrap());
    assert_eq!(moved, 7);
    drop(rt);

    let exe = std::env::current_exe().unwrap();
    let funcs = disassemble(&exe, SLOT_FUNCTIONS);
    for want in SLOT_FUNCTIONS {
        assert!(
            funcs.iter().any(|(n, _)| n.contains(want)),
            "{want} not found in {}: is it still #[inline(never)]?",
            exe.display()
        );
    }
    for (name, insns) in &funcs {
        assert!(!insns.is_empty(), "{name}: no instructions parsed");
        let bad: Vec<&String> = insns.iter().filter(|i| is_rmw(i)).collect();
        assert!(
            bad.is_empty(),
            "{name} contains read-modify-write instructions: {bad:?}"
        );
    }
}

#[test]
fn the_checker_recognises_rmw_instructions() {
    assert!(is_rmw("lock cmpxchg %rcx,(%rdx)"));
    assert!(is_rmw("lock xadd %eax,0x8(%rdi)"));
    assert!(is_rmw("xchg %rax,(%rdx)"));
    assert!(!is_rmw("xchg %ax,%ax"));
    assert!(!is_rmw("mov %rax,(%rdx)"));
    assert!(!is_rmw("mfence"));
}
