// Unpacking an archive into a directory and editing a directory as a tree:
// symlinks the archive made are followed only inside the tree, as a chroot
// would see them, so no entry, hostile or not, writes, links or removes
// anything outside it.
#include "formats/tree/rootfs_tree.h"

#include <sys/stat.h>

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "formats/tree/file_tree.h"
#include "tests/formats/hostile_archives.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ArchiveBuilder;
using testing::Canary;
using testing::HostileArchive;
using testing::HostileForm;
using testing::read_text;

struct HostileCase {
  HostileArchive archive;
  HostileForm form;
};

void PrintTo(const HostileCase& c, std::ostream* out) { *out << c.archive.name << " as " << testing::form_name(c.form); }

std::vector<HostileCase> all_cases() {
  std::vector<HostileCase> out;
  for (const HostileArchive& archive : testing::hostile_archives())
    for (HostileForm form : testing::hostile_forms(archive)) out.push_back({archive, form});
  return out;
}

class HostileExtraction : public ::testing::TestWithParam<HostileCase> {
 protected:
  testing::ScratchDir dir_;
  Canary canary_{dir_ / "outside"};
};

TEST_P(HostileExtraction, NothingOutsideTheTreeChanges) {
  fs::path archive = testing::write_hostile(GetParam().archive, GetParam().form, canary_, dir_ / "hostile");
  fs::create_directories(dir_ / "tree");
  auto done = extract_to_tree(archive, dir_ / "tree");
  if (!done) {
    EXPECT_EQ(done.error().kind, ErrorKind::kBadInput) << done.error().to_string();
  }
  EXPECT_TRUE(canary_.untouched());
  EXPECT_TRUE(canary_.not_linked_from(dir_ / "tree"));
  // Whatever was refused, what came before it is in the tree, nowhere else.
  EXPECT_EQ(read_text(dir_ / "tree/etc/hostname"), "debian\n");
}

INSTANTIATE_TEST_SUITE_P(Corpus, HostileExtraction, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<HostileCase>& info) {
                           return info.param.archive.name + "_" + testing::form_name(info.param.form);
                         });

class ExtractToTree : public ::testing::Test {
 protected:
  fs::path extract(ArchiveBuilder& archive) {
    archive.write_to(dir_ / "archive.tar");
    fs::create_directories(dir_ / "tree");
    auto done = extract_to_tree(dir_ / "archive.tar", dir_ / "tree");
    EXPECT_TRUE(done) << done.error().to_string();
    return dir_ / "tree";
  }
  testing::ScratchDir dir_;
};

TEST_F(ExtractToTree, SymlinksInsideTheTreeAreFollowedAsInAChroot) {
  ArchiveBuilder archive;
  archive.directory("usr").directory("usr/lib").symlink("lib", "usr/lib").symlink("abs", "/usr/lib");
  archive.file("lib/relative", "r\n").file("abs/absolute", "a\n");
  fs::path tree = extract(archive);
  EXPECT_EQ(read_text(tree / "usr/lib/relative"), "r\n");
  EXPECT_EQ(read_text(tree / "usr/lib/absolute"), "a\n");
  EXPECT_EQ(fs::read_symlink(tree / "abs"), "/usr/lib");  // kept as the archive wrote it
}

TEST_F(ExtractToTree, AFileReplacesASymlinkInsteadOfWritingThroughIt) {
  Canary canary(dir_ / "outside");
  ArchiveBuilder archive;
  archive.symlink("link", canary.file()).file("link", "mine\n");
  fs::path tree = extract(archive);
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(tree / "link")));
  EXPECT_EQ(read_text(tree / "link"), "mine\n");
  EXPECT_TRUE(canary.untouched());
}

TEST_F(ExtractToTree, HardlinksInsideTheTreeShareTheirInode) {
  ArchiveBuilder archive;
  archive.directory("usr").symlink("u", "usr").file("usr/a", "shared\n").hardlink("b", "u/a");
  fs::path tree = extract(archive);
  struct stat a, b;
  ASSERT_EQ(::stat((tree / "usr/a").c_str(), &a), 0);
  ASSERT_EQ(::stat((tree / "b").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
}

// A tree packed and extracted again: a sparse file keeps its data at its
// offsets and its holes, whatever libarchive does with the sparse map.
TEST_F(ExtractToTree, ASparseFileSurvivesPackingAndExtraction) {
  fs::path tree = dir_ / "packed";
  fs::create_directories(tree);
  constexpr uint64_t kSize = 64 << 20;
  {
    std::ofstream out(tree / "disk.img", std::ios::binary);
    out << "start";
    out.seekp(kSize / 2);
    out << "middle";
    out.seekp(kSize - 3);
    out << "end";
  }
  ASSERT_TRUE(write_tree_as_tar(tree, dir_ / "packed.tar", 0));
  EXPECT_LT(fs::file_size(dir_ / "packed.tar"), 1u << 20) << "the holes are not stored";
  fs::create_directories(dir_ / "tree");
  ASSERT_TRUE(extract_to_tree(dir_ / "packed.tar", dir_ / "tree"));
  std::string content = testing::read_text(dir_ / "tree/disk.img");
  ASSERT_EQ(content.size(), kSize);
  EXPECT_EQ(content.substr(0, 5), "start");
  EXPECT_EQ(content.substr(kSize / 2, 6), "middle");
  EXPECT_EQ(content.substr(kSize - 3), "end");
}

TEST_F(ExtractToTree, TheRootEntryGivesTheTreeItsModeAndOwner) {
  ArchiveBuilder archive;
  archive.directory(".", {0750, 0, 0}).file("etc", "x\n");
  fs::path tree = extract(archive);
  EXPECT_EQ(fs::status(tree).permissions(), fs::perms(0750));
}

// A directory as a FileTree: the same rule for every edit kiln makes.
class DirectoryTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "tree/etc");
    fs::create_directory_symlink(canary_.path(), dir_ / "tree/evil");
    auto opened = open_directory_tree(dir_ / "tree");
    ASSERT_TRUE(opened) << opened.error().to_string();
    tree_ = std::move(*opened);
  }
  testing::ScratchDir dir_;
  Canary canary_{dir_ / "outside"};
  std::unique_ptr<FileTree> tree_;
};

TEST_F(DirectoryTreeTest, EditsThroughASymlinkOutStayInsideTheTree) {
  TreeAttributes attributes{0600, 0, 0, 1600000000};
  EXPECT_FALSE(tree_->write_file("/evil/FILE", "pwned\n", attributes));
  EXPECT_FALSE(tree_->make_directory("/evil/made", attributes));
  EXPECT_FALSE(tree_->make_symlink("/evil/link", "/", attributes));
  EXPECT_FALSE(tree_->remove("/evil/FILE"));
  EXPECT_FALSE(tree_->set_mode("/evil/FILE", 0777));
  EXPECT_FALSE(tree_->set_owner("/evil/FILE", 1, 1));
  auto read = tree_->read_file("/evil/FILE");
  EXPECT_FALSE(read) << "read a host file through the tree: " << *read;
  EXPECT_TRUE(canary_.untouched());
}

TEST_F(DirectoryTreeTest, TheFinalSymlinkIsActedOnItself) {
  ASSERT_TRUE(tree_->set_owner("/evil", 0, 0));
  ASSERT_TRUE(tree_->remove("/evil"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir_ / "tree/evil")));
  EXPECT_TRUE(canary_.untouched());
}

TEST_F(DirectoryTreeTest, AbsoluteSymlinksStartAgainAtTheTreesRoot) {
  fs::create_directory_symlink("/etc", dir_ / "tree/etc-link");
  ASSERT_TRUE(tree_->write_file("/etc-link/motd", "hello\n", {0644, 0, 0, 0}));
  EXPECT_EQ(read_text(dir_ / "tree/etc/motd"), "hello\n");
  auto node = tree_->stat("/etc-link");
  ASSERT_TRUE(node && *node);
  EXPECT_EQ((*node)->type, EntryType::kSymlink);
  EXPECT_EQ((*node)->link_target, "/etc");
}

}  // namespace
}  // namespace kiln
