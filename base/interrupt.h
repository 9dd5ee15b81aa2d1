// Interrupt: turns SIGINT, SIGTERM and SIGHUP into a flag that long-running
// work polls, so that Ctrl-C unwinds normally and every temporary file and
// directory is removed by its owner on the way out.
#pragma once

#include "base/error.h"

namespace kiln {

// Installs the handlers; call once from main().
void install_interrupt_handlers();

bool interrupted();

// Forgets a signal that has been dealt with, so the next one is noticed.
void clear_interrupt();

// For polling inside loops: fails with ErrorKind::kInterrupted once a signal came.
Result<> check_interrupted();

}  // namespace kiln
