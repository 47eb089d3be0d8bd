// SIGINT and SIGTERM for the whole program: one handler, one flag. The first signal only sets
// the flag (and wakes a thread waiting for it); train checks it between steps and stops cleanly,
// serve stops its server. A second signal ends the program at once with status 128 + its number,
// except inside a DeferExit scope (a checkpoint being written), where it takes effect as soon as
// the scope ends. See docs/reliability.md.
#pragma once

namespace mg {

// While at least one lives, the handlers are installed (nested scopes share them; the outermost
// one clears the flag when it starts and restores the previous handlers when it ends).
class InterruptScope {
 public:
  InterruptScope();
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;
};

// 0, or the first SIGINT or SIGTERM caught in the outermost InterruptScope.
int interrupt_signal();

// Blocks until a signal has been caught (returns at once if one has); returns its number.
int wait_for_interrupt();

const char* signal_name(int signo);  // "SIGINT", "SIGTERM"

// A second signal while one lives does not end the program before the scope's end; then it does,
// with status 128 + that signal (stdout flushed first).
class DeferExit {
 public:
  DeferExit();
  ~DeferExit();
  DeferExit(const DeferExit&) = delete;
  DeferExit& operator=(const DeferExit&) = delete;
};

}  // namespace mg
