// Image versions sort as dpkg sorts package versions.
#include "feeds/version_order.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

TEST(CompareVersions, NumbersCompareAsNumbersNotText) {
  EXPECT_LT(compare_versions("1.9", "1.10"), 0);
  EXPECT_LT(compare_versions("1.0", "1.0.1"), 0);
  EXPECT_GT(compare_versions("2", "1.99"), 0);
  EXPECT_EQ(compare_versions("1.0", "1.00"), 0);
  EXPECT_EQ(compare_versions("1.0", "1.0"), 0);
}

TEST(CompareVersions, TildeSortsBeforeTheReleaseAndLettersBeforeSigns) {
  EXPECT_LT(compare_versions("1.0~rc1", "1.0"), 0);
  EXPECT_LT(compare_versions("1.0~rc1", "1.0~rc2"), 0);
  EXPECT_LT(compare_versions("1.0a", "1.0+"), 0);
  EXPECT_LT(compare_versions("1.0", "1.0a"), 0);
}

TEST(CompareVersions, EpochsAndRevisionsCountAsInDebian) {
  EXPECT_GT(compare_versions("1:0.9", "2.0"), 0);
  EXPECT_LT(compare_versions("1.0-1", "1.0-2"), 0);
  EXPECT_LT(compare_versions("12.4+deb12u5", "12.4+deb12u15"), 0);
}

}  // namespace
}  // namespace kiln
