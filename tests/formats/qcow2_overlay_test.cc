// An overlay kiln writes itself must be what qemu-img would have made.
#include "formats/disk/qcow2_overlay.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

TEST(Qcow2Overlay, QemuImgAcceptsItAndReadsThroughToTheBacking) {
  testing::ScratchDir dir;
  std::string base = (dir / "base.raw").string();
  testing::write_text(base, std::string(3 << 20, 'b') + std::string(4096, 't'));
  ASSERT_TRUE(create_qcow2_overlay(dir / "over.qcow2", base, std::filesystem::file_size(base)));
  auto check = testing::run_program({"qemu-img", "check", (dir / "over.qcow2").string()});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  auto info = testing::run_program({"qemu-img", "info", "--output=json", (dir / "over.qcow2").string()});
  auto json = nlohmann::json::parse(info.out);
  EXPECT_EQ(json["format"], "qcow2");
  EXPECT_EQ(json["backing-filename"], base);
  EXPECT_EQ(json["backing-filename-format"], "raw");
  EXPECT_EQ(json["virtual-size"], std::filesystem::file_size(base));
  auto compare = testing::run_program({"qemu-img", "compare", "-f", "qcow2", "-F", "raw",
                                       (dir / "over.qcow2").string(), base});
  EXPECT_EQ(compare.exit_code, 0) << compare.out;
}

TEST(Qcow2Overlay, TakesWritesWithoutTouchingTheBacking) {
  testing::ScratchDir dir;
  std::string base = (dir / "base.raw").string();
  testing::write_text(base, std::string(8 << 20, 'b'));
  ASSERT_TRUE(create_qcow2_overlay(dir / "over.qcow2", base, 8 << 20));
  auto write = testing::run_program({"qemu-io", "-f", "qcow2", "-c", "write -P 0x61 4096 65536",
                                     (dir / "over.qcow2").string()});
  ASSERT_EQ(write.exit_code, 0) << write.err;
  EXPECT_EQ(testing::read_text(base), std::string(8 << 20, 'b'));
  auto read = testing::run_program({"qemu-io", "-f", "qcow2", "-c", "read -P 0x61 4096 65536",
                                    (dir / "over.qcow2").string()});
  EXPECT_THAT(read.out, HasSubstr("read 65536/65536 bytes"));
  EXPECT_EQ(testing::run_program({"qemu-img", "check", (dir / "over.qcow2").string()}).exit_code, 0);
}

// A Xen config's qcow2 disk: the overlay names its backing format, and its
// size is the one the qcow2 header gives, not the file's.
TEST(Qcow2Overlay, AQcow2BackingIsNamedAsSuchAndSizedByItsHeader) {
  testing::ScratchDir dir;
  std::string base = (dir / "base.qcow2").string();
  auto made = testing::run_program({"qemu-img", "create", "-q", "-f", "qcow2", base, "64M"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  auto size = qcow2_virtual_size(base);
  ASSERT_TRUE(size) << size.error().to_string();
  EXPECT_EQ(*size, 64u << 20);
  ASSERT_TRUE(create_qcow2_overlay(dir / "over.qcow2", base, *size, "qcow2"));
  auto info = testing::run_program({"qemu-img", "info", "--output=json", (dir / "over.qcow2").string()});
  auto json = nlohmann::json::parse(info.out);
  EXPECT_EQ(json["backing-filename-format"], "qcow2");
  EXPECT_EQ(json["virtual-size"], 64u << 20);
  auto compare = testing::run_program({"qemu-img", "compare", "-f", "qcow2", "-F", "qcow2",
                                       (dir / "over.qcow2").string(), base});
  EXPECT_EQ(compare.exit_code, 0) << compare.out << compare.err;
  testing::write_text(dir / "raw", "not qcow2");
  EXPECT_THAT(qcow2_virtual_size(dir / "raw").error().message, HasSubstr("not a qcow2 image"));
}

TEST(Qcow2Overlay, RefusesARelativeBackingPath) {
  testing::ScratchDir dir;
  EXPECT_FALSE(create_qcow2_overlay(dir / "over.qcow2", "relative.raw", 1 << 20));
  EXPECT_FALSE(std::filesystem::exists(dir / "over.qcow2"));
}

}  // namespace
}  // namespace kiln
