#include "base/interrupt.h"

#include <atomic>
#include <csignal>

namespace kiln {
namespace {

std::atomic<int> g_signal{0};

void on_signal(int signal) { g_signal.store(signal, std::memory_order_relaxed); }

}  // namespace

void install_interrupt_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  // No SA_RESTART: a blocking read or wait returns EINTR and notices the flag.
  for (int signal : {SIGINT, SIGTERM, SIGHUP}) sigaction(signal, &action, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

bool interrupted() { return g_signal.load(std::memory_order_relaxed) != 0; }

void clear_interrupt() { g_signal.store(0, std::memory_order_relaxed); }

Result<> check_interrupted() {
  if (interrupted()) return fail(ErrorKind::kInterrupted, "interrupted");
  return {};
}

}  // namespace kiln
