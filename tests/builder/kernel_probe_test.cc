// kiln's probe of whether this host's kernel runs i386 programs, against
// what Debian's arch-test says of the same kernel. A tool test: arch-test
// comes with mmdebstrap (scripts/install-deps.sh).
#include <gtest/gtest.h>

#include "builder/foreign_emulation.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

TEST(KernelRunsI386, AgreesWithArchTest) {
  if (testing::run_program({"sh", "-c", "command -v arch-test"}).exit_code != 0)
    GTEST_SKIP() << "arch-test is not installed (it comes with mmdebstrap: scripts/install-deps.sh)";
  bool arch_test = testing::run_program({"arch-test", "i386"}).exit_code == 0;
  EXPECT_EQ(kernel_runs_i386(), arch_test);
}

}  // namespace
}  // namespace kiln
