// The part of the CI matrix that `make test` runs (ctest label
// "integration"): the default recipe baked for i386 (natively: an amd64
// kernel runs i386 binaries) and for trixie and sid, each checked as it
// lies on disk (architecture, a clean root, its hostname), and the i386
// image booted under qemu-system-i386. The arm64 bake (qemu-user, 13
// minutes or more here) and the other boots are tests/matrix/matrix_test.cc's.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/matrix/matrix_images.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using testing::MatrixBootTest;
using testing::ProcessResult;

TEST(SuiteBake, I386TrixieAndSidRecordTheirArchitectureAndPassFsck) {
  testing::expect_baked_for("i386", "i386");
  testing::expect_baked_for("trixie", "amd64");
  testing::expect_baked_for("sid", "amd64");
  EXPECT_THAT(testing::matrix_debugfs("trixie", "cat /usr/lib/os-release"), HasSubstr("VERSION_CODENAME=trixie"));
  EXPECT_THAT(testing::matrix_manifest("i386")["packages"].dump(), HasSubstr("\"linux-image-686\""));
}

TEST_F(MatrixBootTest, AnI386ImageBootsUnderQemuSystemI386AndAnswersExec) {
  ProcessResult booted = boot("i386", "x86-32");
  ASSERT_EQ(booted.exit_code, 0) << booted.err;
  EXPECT_EQ(exec("x86-32", "uname -m; dpkg --print-architecture"), "i686\ni386\n");
}

}  // namespace
}  // namespace kiln
