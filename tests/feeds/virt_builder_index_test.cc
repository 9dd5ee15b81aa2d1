// The virt-builder index: the man page's example reads; kiln's updates keep
// other sections; virt-index-validate accepts what kiln writes; and the xz
// image is what xz reads back.
#include "feeds/virt_builder_index.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "feeds/xz_compress.h"
#include "tests/feeds/fake_bake.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

constexpr const char* kManPageExample = R"([fedora-18]
name=Fedora® 18
osinfo=fedora18
arch=x86_64
file=fedora-18.xz
checksum[sha512]=abc
format=raw
size=6442450944
compressed_size=148947524
expand=/dev/sda3

# a comment
[fedora-19]
name=Fedora® 19
osinfo=fedora19
arch=x86_64
file=fedora-19.xz
revision=3
notes=This image was prepared using
 the following kickstart script:
 
  part /boot --fstype ext3
)";

TEST(VirtBuilderIndex, ReadsTheManPageExample) {
  auto index = parse_virt_builder_index(kManPageExample, "index");
  ASSERT_TRUE(index) << index.error().to_string();
  ASSERT_EQ(index->sections.size(), 2u);
  EXPECT_EQ(index->sections[0].id, "fedora-18");
  EXPECT_EQ(*index->sections[0].get("checksum[sha512]"), "abc");
  EXPECT_EQ(*index->sections[0].get("size"), "6442450944");
  EXPECT_EQ(*index->sections[1].get("notes"),
            "This image was prepared using\nthe following kickstart script:\n\n part /boot --fstype ext3");
}

TEST(VirtBuilderIndex, WritingKeepsOtherSectionsAndMultiLineNotes) {
  auto index = parse_virt_builder_index(kManPageExample, "index");
  ASSERT_TRUE(index);
  IndexSection mine{"web", {{"name", "Web server"}, {"arch", "x86_64"}, {"notes", "line one\n\nline three"}}};
  index->upsert(mine);
  mine.set("arch", "aarch64");
  index->upsert(mine);
  auto text = write_virt_builder_index(*index);
  ASSERT_TRUE(text) << text.error().to_string();
  EXPECT_THAT(*text, HasSubstr("notes=line one\n \n line three\n"));
  auto back = parse_virt_builder_index(*text, "index");
  ASSERT_TRUE(back) << back.error().to_string();
  ASSERT_EQ(back->sections.size(), 3u);
  EXPECT_EQ(*back->sections[1].get("notes"), *index->sections[1].get("notes"));
  EXPECT_EQ(*back->find("web")->get("arch"), "aarch64");
  EXPECT_EQ(*back->find("web")->get("notes"), "line one\n\nline three");
}

TEST(VirtBuilderIndex, VirtIndexValidateAcceptsWhatKilnWrites) {
  testing::ScratchDir dir;
  VirtBuilderIndex index;
  index.upsert({"kiln-test", {{"name", "A test image"}, {"osinfo", "debian12"}, {"arch", "x86_64"},
                              {"file", "kiln-test-1.0.raw.xz"}, {"checksum[sha512]", std::string(128, 'a')},
                              {"format", "raw"}, {"size", "1073741824"}, {"compressed_size", "1234"},
                              {"revision", "2"}, {"expand", "/dev/sda2"}, {"notes", "one\n\ntwo"}}});
  auto text = write_virt_builder_index(index);
  ASSERT_TRUE(text);
  testing::write_text(dir / "index", *text);
  auto validated = testing::run_program({"virt-index-validate", (dir / "index").string()});
  EXPECT_EQ(validated.exit_code, 0) << validated.out << validated.err;
}

TEST(VirtBuilderIndex, ErrorsNameTheLine) {
  auto before = parse_virt_builder_index("name=x\n[a]\n", "index");
  ASSERT_FALSE(before);
  EXPECT_THAT(before.error().to_string(), HasSubstr("index:1: a field before the first"));
  auto no_equals = parse_virt_builder_index("[a]\nname x\n", "index");
  ASSERT_FALSE(no_equals);
  EXPECT_THAT(no_equals.error().to_string(), HasSubstr("index:2: expected 'key=value'"));
  auto twice = parse_virt_builder_index("[a]\n[a]\n", "index");
  ASSERT_FALSE(twice);
  EXPECT_THAT(twice.error().message, HasSubstr("appears twice"));
  auto bad_id = parse_virt_builder_index("[a b]\n", "index");
  ASSERT_FALSE(bad_id);
  auto dangling = parse_virt_builder_index(" continued\n", "index");
  ASSERT_FALSE(dangling);
  EXPECT_THAT(dangling.error().message, HasSubstr("continuation"));
}

TEST(XzCompress, XzReadsBackTheImageAndTheSha512IsOfTheFile) {
  testing::ScratchDir dir;
  testing::write_sparse_file(dir / "disk.raw", 8 << 20, 3 << 20, testing::noise(200000, "xz"));
  XzOptions options;
  options.level = 1;
  options.threads = 2;
  auto done = xz_compress_file(dir / "disk.raw", dir / "disk.raw.xz", options);
  ASSERT_TRUE(done) << done.error().to_string();
  EXPECT_EQ(done->compressed_size, std::filesystem::file_size(dir / "disk.raw.xz"));
  auto sha512 = testing::run_program({"sha512sum", (dir / "disk.raw.xz").string()});
  EXPECT_EQ(sha512.out.substr(0, 128), done->sha512);
  auto same = testing::run_program({"sh", "-c", "xz -dc \"$0\" | cmp - \"$1\"", (dir / "disk.raw.xz").string(),
                                    (dir / "disk.raw").string()});
  EXPECT_EQ(same.exit_code, 0) << same.out << same.err;
  EXPECT_THAT(testing::list_tree(dir.path()), ::testing::ElementsAre("disk.raw", "disk.raw.xz"));
}

}  // namespace
}  // namespace kiln
