// An .xvm that is not laid out as kiln publishes packages (a XenServer
// export, a plain tarball) is input kiln does not read: exit 2, saying
// what it expected. A kiln package missing one of its texts is a damaged
// one: a verification failure.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "feeds/xvm_archive.h"
#include "feeds/xvm_package.h"
#include "tests/formats/archive_builder.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

Result<VerifiedXvm> verify(testing::ArchiveBuilder& builder, const testing::ScratchDir& dir) {
  builder.write_to(dir / "image.xvm");
  KILN_ASSIGN(XvmArchive archive, XvmArchive::open(dir / "image.xvm"));
  return verify_xvm(archive, nullptr, {});
}

TEST(XvmLayout, AnotherKindOfArchiveIsUnsupportedInputNamingWhatItHolds) {
  testing::ScratchDir dir;
  testing::ArchiveBuilder xva(testing::ArchiveFormat::kUstar);
  xva.file("ova.xml", "<value/>").file("Ref:12/00000000", std::string(512, 'x'));
  auto verified = verify(xva, dir);
  ASSERT_FALSE(verified);
  EXPECT_EQ(verified.error().kind, ErrorKind::kBadInput);
  EXPECT_THAT(verified.error().message, HasSubstr("not a vmcast package as kiln publishes them: it holds "
                                                  "\"ova.xml\", \"Ref:12/00000000\"; kiln reads .xvm archives with "
                                                  "xvm.xml and manifest.txt"));
}

TEST(XvmLayout, AKilnPackageMissingOneOfItsTextsFailsVerification) {
  testing::ScratchDir dir;
  testing::ArchiveBuilder damaged(testing::ArchiveFormat::kUstar);
  damaged.file("xvm.xml", "<appliance/>");
  auto verified = verify(damaged, dir);
  ASSERT_FALSE(verified);
  EXPECT_EQ(verified.error().kind, ErrorKind::kUntrusted);
  EXPECT_THAT(verified.error().message, HasSubstr("the archive has no manifest.txt"));
}

}  // namespace
}  // namespace kiln
