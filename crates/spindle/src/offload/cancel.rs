//! The cancellation handshake of a ring request: how an owner that gives up on an
//! operation makes sure the server holding it hears of it, wherever the owner runs.
//!
//! Protocol (one [`Flag`] per request record, one [`Word`] per server):
//! - **Owner** ([`ask`]): sets its record's flag (release), then sets its server's
//!   word with an RMW (release), then rings the server's core. Writer of the flag:
//!   the owner alone, once.
//! - **Server**, taking a request: reads the record's flag (acquire); if set, the
//!   operation never starts.
//! - **Server**, each pass ([`Word::take`]): swaps its word to false (acquire); if it
//!   was set, reads the flag of every record it holds. Writer of the word's false:
//!   the server alone.
//!
//! No cancel is lost. The owners' RMWs on the word form one release sequence headed
//! by the first set after the server's last swap, so a swap that reads true
//! synchronises with every owner whose set precedes it, and sees their flags. An
//! owner whose set follows the swap leaves the word true, and its ring makes the
//! server run another pass (`has_posted` reads the word before the server sleeps).
//! A record the server takes after the owner's flag is set is refused at the take.
//! (loom: `loom_no_cancel_is_lost`.)

use crate::loom::{AtomicBool, Ordering};

/// A request record's cancel flag.
pub(crate) struct Flag(AtomicBool);

/// A server's word: some owner asked for a cancellation since its last look.
pub(crate) struct Word(AtomicBool);

impl Flag {
    pub(crate) fn new() -> Flag {
        Flag(AtomicBool::new(false))
    }

    /// The server's read, at the take and after [`Word::take`] said to look.
    pub(crate) fn is_set(&self) -> bool {
        // Acquire: pairs with the owner's release store in `ask`.
        self.0.load(Ordering::Acquire)
    }
}

impl Word {
    pub(crate) fn new() -> Word {
        Word(AtomicBool::new(false))
    }

    /// Whether an owner asked since the last [`Word::take`] (a relaxed peek: the
    /// server's check before it sleeps, and its cheap test each pass).
    pub(crate) fn peek(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The server's look: whether to read the flags of the records it holds.
    pub(crate) fn take(&self) -> bool {
        // Acquire: reads the release sequence of the owners' sets (see the module
        // docs), so every flag set before a set this swap reads is visible.
        self.0.swap(false, Ordering::Acquire)
    }
}

/// The owner's half: sets `flag`, then tells `word`'s server (the caller then rings
/// that server's core).
pub(crate) fn ask(flag: &Flag, word: &Word) {
    // Release: the flag travels with the word's set.
    flag.0.store(true, Ordering::Release);
    // An RMW, so that it continues the release sequence a later swap reads.
    word.0.swap(true, Ordering::Release);
}

#[cfg(all(test, loom))]
mod tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Two owners give up on two requests the server holds, while the server takes
    /// a look: after the server's next pass (which the owners' rings cause whenever
    /// the word is still set), it has seen both flags.
    #[test]
    fn loom_no_cancel_is_lost() {
        loom::model(|| {
            let word = Arc::new(Word::new());
            let flags = Arc::new([Flag::new(), Flag::new()]);
            let owners: Vec<_> = (0..2)
                .map(|i| {
                    let (word, flags) = (word.clone(), flags.clone());
                    thread::spawn(move || ask(&flags[i], &word))
                })
                .collect();
            let mut seen = [false; 2];
            let look = |seen: &mut [bool; 2]| {
                if word.take() {
                    for (s, f) in seen.iter_mut().zip(flags.iter()) {
                        *s |= f.is_set();
                    }
                }
            };
            // A pass that races the owners.
            look(&mut seen);
            for o in owners {
                o.join().unwrap();
            }
            // The pass their rings caused, if the word is still set.
            if word.peek() {
                look(&mut seen);
            }
            assert_eq!(seen, [true, true], "an owner's cancel was lost");
        });
    }
}
