// Whether KVM works is found out by running a guest, never assumed from
// /dev/kvm; the verdict is remembered.
#include "runtime/kvm_probe.h"

#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

using testing::ScratchDir;

TEST(KvmProbe, TheProbeGuestRunsUnderEmulation) {
  // The same guest under TCG must print its word, or a "no" from KVM would
  // say nothing about KVM.
  ScratchDir dir;
  KvmVerdict tcg = probe_accelerator(dir.path(), "qemu-system-x86_64", "tcg");
  EXPECT_TRUE(tcg.works) << tcg.reason;
  EXPECT_EQ(tcg.reason, "a probe guest ran under tcg");
}

TEST(KvmProbe, GivesAVerdictWithAReasonAndRemembersIt) {
  ScratchDir dir;
  KvmVerdict first = probe_kvm(dir.path(), "qemu-system-x86_64");
  EXPECT_FALSE(first.cached);
  EXPECT_FALSE(first.reason.empty());
  KvmVerdict second = probe_kvm(dir.path(), "qemu-system-x86_64");
  EXPECT_TRUE(second.cached);
  EXPECT_EQ(second.works, first.works);
  EXPECT_EQ(second.reason, first.reason);
  RecordProperty("kvm", first.works ? "works" : first.reason);
}

}  // namespace
}  // namespace kiln
