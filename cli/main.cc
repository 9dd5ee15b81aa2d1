#include <fmt/format.h>

#include "base/interrupt.h"

int main() {
  kiln::install_interrupt_handlers();
  fmt::print("kiln {}\n", KILN_VERSION);
  return 0;
}
