// kiln's patch format: line diffs, the text form (docs/patch-format.md),
// diffs between trees, and applying them all or nothing.
#include "formats/tree/tree_patch.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/hash.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::read_text;
using testing::ScratchDir;
using testing::write_text;

// --- Line diffs -------------------------------------------------------------

TEST(LineDiff, OneChangedLineIsOneHunkWithThreeLinesOfContext) {
  std::string before = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
  std::string after = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
  auto hunks = diff_lines(before, after);
  ASSERT_EQ(hunks.size(), 1u);
  EXPECT_EQ(hunks[0].header(), "@@ -2,7 +2,7 @@");
  ASSERT_EQ(hunks[0].lines.size(), 8u);
  EXPECT_EQ(hunks[0].lines[3], (HunkLine{'-', "5\n"}));
  EXPECT_EQ(hunks[0].lines[4], (HunkLine{'+', "five\n"}));
  EXPECT_EQ(apply_hunks(before, hunks).text, after);
}

TEST(LineDiff, DistantChangesGetTheirOwnHunksAndCloseOnesShareOne) {
  std::string before, after;
  for (int i = 1; i <= 30; ++i) {
    before += std::to_string(i) + "\n";
    after += (i == 2 || i == 25 || i == 29 ? "x" : std::to_string(i)) + "\n";
  }
  auto hunks = diff_lines(before, after);
  ASSERT_EQ(hunks.size(), 2u);
  EXPECT_EQ(hunks[0].header(), "@@ -1,5 +1,5 @@");
  EXPECT_EQ(hunks[1].header(), "@@ -22,9 +22,9 @@");
  EXPECT_EQ(apply_hunks(before, hunks).text, after);
}

TEST(LineDiff, TheEditScriptIsMinimal) {
  // The example of Myers' paper: ABCABBA to CBABAC takes 5 edits at least.
  auto hunks = diff_lines("a\nb\nc\na\nb\nb\na\n", "c\nb\na\nb\na\nc\n", 0);
  int edits = 0;
  for (const Hunk& hunk : hunks)
    for (const HunkLine& line : hunk.lines) edits += line.kind != ' ';
  EXPECT_EQ(edits, 5);
  EXPECT_EQ(apply_hunks("a\nb\nc\na\nb\nb\na\n", diff_lines("a\nb\nc\na\nb\nb\na\n", "c\nb\na\nb\na\nc\n")).text,
            "c\nb\na\nb\na\nc\n");
}

TEST(LineDiff, AMissingFinalNewlineIsAChangeOfItsOwn) {
  auto hunks = diff_lines("a\nb\n", "a\nb");
  ASSERT_EQ(hunks.size(), 1u);
  EXPECT_EQ(hunks[0].lines.back(), (HunkLine{'+', "b"}));
  EXPECT_EQ(apply_hunks("a\nb\n", hunks).text, "a\nb");
}

TEST(LineDiff, AHunkAppliesWhereTheFileMovedAndNotWhereItDiffers) {
  auto hunks = diff_lines("a\nb\nc\nd\ne\n", "a\nb\nC\nd\ne\n");
  // Two lines were added above since the diff was made: the hunk moves down.
  EXPECT_EQ(apply_hunks("new1\nnew2\na\nb\nc\nd\ne\n", hunks).text, "new1\nnew2\na\nb\nC\nd\ne\n");
  HunkResult rejected = apply_hunks("a\nb\nc\nD\ne\n", hunks);
  ASSERT_EQ(rejected.rejections.size(), 1u);
  EXPECT_EQ(rejected.rejections[0].line, 4);
  EXPECT_EQ(rejected.rejections[0].expected, "d\n");
  EXPECT_EQ(rejected.rejections[0].found, "D\n");
  EXPECT_EQ(rejected.text, "");
}

TEST(LineDiff, VeryDifferentTextsStillDiffCorrectly) {
  std::string before, after;
  for (int i = 0; i < 6000; ++i) {
    before += "old " + std::to_string(i) + "\n";
    after += "new " + std::to_string(i) + "\n";
  }
  auto hunks = diff_lines(before, after);
  ASSERT_EQ(hunks.size(), 1u);
  EXPECT_EQ(apply_hunks(before, hunks).text, after);
}

// --- Trees ------------------------------------------------------------------

// Two trees on disk for a test: `old` and `new`.
class TreePatchTest : public ::testing::Test {
 protected:
  fs::path old_dir() const { return dir_ / "old"; }
  fs::path new_dir() const { return dir_ / "new"; }

  void SetUp() override {
    fs::create_directories(old_dir());
    fs::create_directories(new_dir());
  }

  static void file(const fs::path& path, const std::string& content, mode_t mode = 0644, uid_t uid = 0) {
    fs::create_directories(path.parent_path());
    write_text(path, content);
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    ASSERT_EQ(::lchown(path.c_str(), uid, uid), 0);
  }

  std::unique_ptr<FileTree> tree(const fs::path& root) {
    auto opened = open_directory_tree(root);
    EXPECT_TRUE(opened) << opened.error().to_string();
    return std::move(*opened);
  }

  TreePatch diff() {
    auto a = tree(old_dir()), b = tree(new_dir());
    auto patch = diff_trees(*a, *b);
    EXPECT_TRUE(patch) << patch.error().to_string();
    return patch ? std::move(*patch) : TreePatch{};
  }

  // Applies `patch` to `root`; the error text when it does not apply.
  std::string apply(const fs::path& root, const TreePatch& patch) {
    auto t = tree(root);
    auto plan = check_tree_patch(*t, patch, "test.patch");
    if (!plan) return plan.error().to_string();
    auto applied = apply_patch_plan(*t, *plan, 1700000000);
    return applied ? "" : applied.error().to_string();
  }

  bool same(const fs::path& a, const fs::path& b) {
    auto ta = tree(a), tb = tree(b);
    auto patch = diff_trees(*ta, *tb);
    return patch && patch->entries.empty();
  }

  ScratchDir dir_;
};

TEST_F(TreePatchTest, ThePatchTextIsTheDocumentedFormat) {
  file(old_dir() / "etc/hostname", "debian\n");
  file(new_dir() / "etc/hostname", "fido\n");
  file(old_dir() / "etc/motd", "hello\n");
  fs::create_directories(new_dir() / "etc");
  file(new_dir() / "etc/my file", "two\nlines", 0600, 1000);
  fs::create_symlink("/usr/share/zoneinfo/UTC", new_dir() / "etc/localtime");
  EXPECT_EQ(write_tree_patch(diff()),
            "kiln-patch 1\n"
            "\n"
            "diff etc/hostname\n"
            "old file 0644 0:0\n"
            "new file 0644 0:0\n"
            "--- a/etc/hostname\n"
            "+++ b/etc/hostname\n"
            "@@ -1 +1 @@\n"
            "-debian\n"
            "+fido\n"
            "\n"
            "diff etc/localtime\n"
            "old none\n"
            "new symlink /usr/share/zoneinfo/UTC 0:0\n"
            "\n"
            "diff etc/motd\n"
            "old file 0644 0:0\n"
            "new none\n"
            "sha256 " + sha256_hex("hello\n") + "\n"
            "\n"
            "diff \"etc/my file\"\n"
            "old none\n"
            "new file 0600 1000:1000\n"
            "--- /dev/null\n"
            "+++ \"b/etc/my file\"\n"
            "@@ -0,0 +1,2 @@\n"
            "+two\n"
            "+lines\n"
            "\\ No newline at end of file\n");
}

TEST_F(TreePatchTest, EveryKindOfChangeRoundTripsThroughTheTextAndApplies) {
  file(old_dir() / "etc/passwd", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n");
  file(new_dir() / "etc/passwd", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n"
                                 "alice:x:1000:1000::/home/alice:/bin/bash\n");
  file(old_dir() / "bin/tool", std::string("\x7f" "ELF\0\1\2", 7), 0755);
  file(new_dir() / "bin/tool", std::string("\x7f" "ELF\0\3\4\5", 8), 0755);
  file(old_dir() / "etc/mode", "same\n", 0644);
  file(new_dir() / "etc/mode", "same\n", 0600, 33);
  file(old_dir() / "old/deep/file", "gone\n");
  file(new_dir() / "home/alice/.profile", "export EDITOR=vi\n", 0644, 1000);
  ASSERT_EQ(::chown((new_dir() / "home/alice").c_str(), 1000, 1000), 0);
  file(new_dir() / "empty", "");
  fs::create_symlink("a", old_dir() / "link");
  fs::create_symlink("b", new_dir() / "link");
  file(old_dir() / "swap", "was a file\n");
  fs::create_directories(new_dir() / "swap");

  TreePatch patch = diff();
  std::string text = write_tree_patch(patch);
  auto reread = parse_tree_patch(text, "roundtrip.patch");
  ASSERT_TRUE(reread) << reread.error().to_string() << "\n" << text;
  EXPECT_EQ(reread->entries, patch.entries);
  EXPECT_EQ(apply(old_dir(), *reread), "");
  EXPECT_TRUE(same(old_dir(), new_dir())) << write_tree_patch(diff());
  struct stat st;
  ASSERT_EQ(::stat((old_dir() / "etc/mode").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, 33u);
  EXPECT_FALSE(fs::exists(old_dir() / "old"));
}

TEST_F(TreePatchTest, ChildrenAreRemovedBeforeTheirDirectoryAndCreatedAfterIt) {
  file(old_dir() / "gone/a/b", "x\n");
  file(new_dir() / "made/a/b", "y\n");
  std::vector<std::string> order;
  for (const PatchEntry& entry : diff().entries) order.push_back(entry.path);
  EXPECT_EQ(order, (std::vector<std::string>{"gone/a/b", "gone/a", "gone", "made", "made/a", "made/a/b"}));
}

TEST_F(TreePatchTest, APatchThatDoesNotApplyChangesNothingAndNamesEveryRejection) {
  file(old_dir() / "etc/hostname", "debian\n");
  file(old_dir() / "etc/group", "root:x:0:\nusers:x:100:\n");
  file(new_dir() / "etc/hostname", "fido\n");
  file(new_dir() / "etc/group", "root:x:0:\nusers:x:100:alice\n");
  file(new_dir() / "etc/new", "new\n");
  TreePatch patch = diff();
  // The target has moved on since: another hostname, a file where the new one goes.
  fs::path target = dir_ / "target";
  file(target / "etc/hostname", "rex\n");
  file(target / "etc/group", "root:x:0:\nusers:x:100:\n");
  file(target / "etc/new", "already here\n");
  // Read back from its text, so that rejections name their lines in it:
  // etc/group's entry takes lines 3 to 11, etc/hostname's hunk header is
  // line 18 and etc/new's entry starts at line 22.
  auto text = parse_tree_patch(write_tree_patch(patch), "test.patch");
  ASSERT_TRUE(text) << text.error().to_string();
  std::string error = apply(target, *text);
  EXPECT_THAT(error, HasSubstr("test.patch does not apply to the directory " + target.string() +
                               ": 2 rejections; nothing was changed"));
  EXPECT_THAT(error, HasSubstr("test.patch:18: etc/hostname: hunk 1 @@ -1 +1 @@ does not apply: line 1 reads "
                               "\"rex\" where the patch expects \"debian\""));
  EXPECT_THAT(error, HasSubstr("test.patch:22: etc/new: the patch expects 'none' here, the directory " +
                               target.string() + " has 'file 0644 0:0'"));
  // A patch made in memory has no lines to name.
  EXPECT_THAT(apply(target, patch), HasSubstr("\n  test.patch: etc/hostname: hunk 1"));
  EXPECT_EQ(read_text(target / "etc/group"), "root:x:0:\nusers:x:100:\n");  // its entry was fine, yet not applied
  EXPECT_EQ(read_text(target / "etc/hostname"), "rex\n");
}

TEST_F(TreePatchTest, AChangedBinaryOrDeletedFileIsCheckedByItsHash) {
  file(old_dir() / "blob", std::string("\0\1", 2));
  file(new_dir() / "blob", std::string("\0\2", 2));
  file(old_dir() / "doomed", "keep me?\n");
  TreePatch patch = diff();
  fs::path target = dir_ / "target";
  file(target / "blob", std::string("\0\3", 2));
  file(target / "doomed", "edited since\n");
  std::string error = apply(target, patch);
  EXPECT_THAT(error, HasSubstr("blob: the content in the directory"));
  EXPECT_THAT(error, HasSubstr("doomed: the content in the directory"));
  EXPECT_TRUE(fs::exists(target / "doomed"));
}

TEST_F(TreePatchTest, ADirectoryToRemoveMustBeEmptyOnceTheEarlierEntriesRan) {
  file(old_dir() / "d/a", "a\n");
  TreePatch patch = diff();
  fs::path target = dir_ / "target";
  file(target / "d/a", "a\n");
  file(target / "d/extra", "not in the patch\n");
  EXPECT_THAT(apply(target, patch), HasSubstr("d: the directory is to go but still holds /d/extra"));
  EXPECT_TRUE(fs::exists(target / "d/a"));
}

TEST_F(TreePatchTest, ANewFileNeedsItsDirectory) {
  fs::create_directories(new_dir() / "etc");
  file(new_dir() / "etc/x", "x\n");
  TreePatch patch = diff();
  patch.entries.erase(patch.entries.begin());  // drop "etc": the directory
  fs::path target = dir_ / "target";
  fs::create_directories(target);
  EXPECT_THAT(apply(target, patch), HasSubstr("etc/x: its directory /etc is not in the directory"));
}

TEST_F(TreePatchTest, EqualDeviceNodesAreLeftAloneAndDifferentOnesRefused) {
  ASSERT_EQ(::mkfifo((old_dir() / "fifo").c_str(), 0644), 0);
  ASSERT_EQ(::mkfifo((new_dir() / "fifo").c_str(), 0644), 0);
  EXPECT_TRUE(diff().entries.empty());
  ASSERT_EQ(::mkfifo((new_dir() / "other").c_str(), 0600), 0);
  auto a = tree(old_dir()), b = tree(new_dir());
  auto patch = diff_trees(*a, *b);
  ASSERT_FALSE(patch);
  EXPECT_THAT(patch.error().message, HasSubstr("/other: device nodes, fifos and sockets are not carried"));
}

TEST_F(TreePatchTest, SymlinksOnTheWayStayInsideTheTree) {
  // /etc is a symlink to an absolute path: inside the tree, never the host's /etc.
  fs::create_directories(old_dir() / "real-etc");
  fs::create_symlink("/real-etc", old_dir() / "etc");
  auto t = tree(old_dir());
  ASSERT_TRUE(t->write_file("/etc/kiln-test-file", "inside\n", {}));
  EXPECT_EQ(read_text(old_dir() / "real-etc/kiln-test-file"), "inside\n");
  EXPECT_FALSE(fs::exists("/etc/kiln-test-file"));
  fs::create_symlink("../../../..", old_dir() / "up");
  ASSERT_TRUE(t->write_file("/up/escaped", "x\n", {}));
  EXPECT_TRUE(fs::exists(old_dir() / "escaped"));
}

TEST_F(TreePatchTest, AParentThatIsADanglingSymlinkIsRejectedBeforeAnythingChanges) {
  fs::create_directories(new_dir() / "etc");
  file(new_dir() / "etc/a", "a\n");
  file(new_dir() / "etc/b", "b\n");
  TreePatch patch = diff();
  patch.entries.erase(patch.entries.begin());  // "etc" itself: the target has it, as a symlink
  fs::path target = dir_ / "target";
  fs::create_directories(target);
  file(target / "kept", "kept\n");
  fs::create_symlink("/nowhere", target / "etc");
  fs::path pristine = dir_ / "pristine";
  fs::create_directories(pristine);
  file(pristine / "kept", "kept\n");
  fs::create_symlink("/nowhere", pristine / "etc");
  std::string error = apply(target, patch);
  EXPECT_THAT(error, HasSubstr("etc/a: its directory /etc (which leads to /nowhere) is not in the directory"));
  EXPECT_THAT(error, HasSubstr("2 rejections; nothing was changed"));
  EXPECT_TRUE(same(target, pristine));
}

TEST_F(TreePatchTest, TwoNamesForOneNodeAreCheckedAsOne) {
  // lib -> usr/lib: a patch that creates usr/lib/x and then lib/x creates
  // one file twice, which the check sees (the second finds the first).
  fs::path target = dir_ / "target";
  fs::create_directories(target / "usr/lib");
  fs::create_symlink("usr/lib", target / "lib");
  TreePatch patch;
  for (const char* path : {"usr/lib/x", "lib/x"}) {
    PatchEntry entry;
    entry.path = path;
    entry.new_state = {NodeKind::kFile, 0644, 0, 0, {}};
    entry.new_content = "x\n";
    patch.entries.push_back(entry);
  }
  EXPECT_THAT(apply(target, patch), HasSubstr("lib/x: the patch expects 'none' here, the directory"));
  EXPECT_FALSE(fs::exists(target / "usr/lib/x"));
}

// A tree whose writes start failing after a number of them: a full disk
// half-way through a patch.
class FailingTree final : public FileTree {
 public:
  FailingTree(FileTree& tree, int writes_allowed) : tree_(tree), left_(writes_allowed) {}
  std::string describe() const override { return tree_.describe(); }
  Result<std::optional<TreeNode>> stat(std::string_view p) override { return tree_.stat(p); }
  Result<std::string> read_file(std::string_view p) override { return tree_.read_file(p); }
  Result<std::vector<std::string>> list_directory(std::string_view p) override { return tree_.list_directory(p); }
  Result<> write_file(std::string_view p, std::string_view c, const TreeAttributes& a) override {
    KILN_TRY(spend(p));
    return tree_.write_file(p, c, a);
  }
  Result<> make_directory(std::string_view p, const TreeAttributes& a) override {
    KILN_TRY(spend(p));
    return tree_.make_directory(p, a);
  }
  Result<> make_symlink(std::string_view p, std::string_view t, const TreeAttributes& a) override {
    KILN_TRY(spend(p));
    return tree_.make_symlink(p, t, a);
  }
  Result<> remove(std::string_view p) override {
    KILN_TRY(spend(p));
    return tree_.remove(p);
  }
  Result<> set_mode(std::string_view p, uint32_t m) override { return tree_.set_mode(p, m); }
  Result<> set_owner(std::string_view p, uint32_t u, uint32_t g) override { return tree_.set_owner(p, u, g); }
  // Undoing is allowed to write again.
  void heal() { left_ = 1 << 30; }

 private:
  Result<> spend(std::string_view path) {
    if (left_-- > 0) return {};
    heal();
    return fail(ErrorKind::kNoSpace, "{}: No space left on device", path);
  }
  FileTree& tree_;
  int left_;
};

TEST_F(TreePatchTest, AStepThatFailsUndoesTheStepsBeforeIt) {
  file(old_dir() / "etc/hostname", "debian\n");
  file(old_dir() / "etc/gone", "to be removed\n");
  fs::create_directories(old_dir() / "var");
  file(new_dir() / "etc/hostname", "fido\n");
  fs::create_directories(new_dir() / "srv/www");
  file(new_dir() / "srv/www/index.html", "<p>hi</p>\n");
  fs::create_symlink("/srv/www", new_dir() / "www");
  TreePatch patch = diff();
  ASSERT_GE(patch.entries.size(), 5u);
  for (int allowed = 0; allowed < static_cast<int>(patch.entries.size()); ++allowed) {
    fs::path target = dir_ / ("target" + std::to_string(allowed));
    fs::copy(old_dir(), target, fs::copy_options::recursive);
    auto real = tree(target);
    FailingTree failing(*real, allowed);
    auto plan = check_tree_patch(failing, patch, "test.patch");
    ASSERT_TRUE(plan) << plan.error().to_string();
    auto applied = apply_patch_plan(failing, *plan, 1700000000);
    ASSERT_FALSE(applied) << "after " << allowed << " writes";
    EXPECT_THAT(applied.error().message, HasSubstr("the steps already applied were undone"));
    EXPECT_TRUE(same(target, old_dir())) << "after " << allowed << " writes";
  }
}

// --- Reading errors ---------------------------------------------------------

std::string parse_error(std::string_view text) {
  auto patch = parse_tree_patch(text, "bad.patch");
  return patch ? "(parsed without error)" : patch.error().to_string();
}

TEST(TreePatchSyntax, EachMistakeIsReportedAtItsLineAndColumn) {
  EXPECT_EQ(parse_error("--- a/x\n+++ b/x\n"),
            "bad.patch:1:1: expected 'kiln-patch 1' on the first line (a kiln patch, see docs/patch-format.md)");
  EXPECT_EQ(parse_error("kiln-patch 2\n"),
            "bad.patch:1:1: expected 'kiln-patch 1': this patch is in a format version this kiln does not read");
  EXPECT_EQ(parse_error("kiln-patch 1\n\nfile x\n"), "bad.patch:3:1: expected 'diff '");
  EXPECT_EQ(parse_error("kiln-patch 1\ndiff /etc/x\n"),
            "bad.patch:2:6: expected a relative path like etc/hostname (or . for the root), found '/etc/x'");
  EXPECT_EQ(parse_error("kiln-patch 1\ndiff etc/../x\n"),
            "bad.patch:2:6: expected a path without empty, '.' or '..' components, found 'etc/../x'");
  EXPECT_EQ(parse_error("kiln-patch 1\ndiff x\nold fil 0644 0:0\n"),
            "bad.patch:3:5: expected none, file, directory or symlink, found 'fil'");
  EXPECT_EQ(parse_error("kiln-patch 1\ndiff x\nold file 0944 0:0\n"),
            "bad.patch:3:10: expected a mode of four octal digits, found '0944'");
  EXPECT_EQ(parse_error("kiln-patch 1\ndiff x\nold file 0644 root\n"),
            "bad.patch:3:15: expected an owner UID:GID (numbers), found 'root'");
  EXPECT_EQ(parse_error("kiln-patch 1\ndiff x\nold file 0644 0:0\n"),
            "bad.patch:4:1: expected 'new STATE', found the end of the patch");
  EXPECT_EQ(parse_error("kiln-patch 1\ndiff x\nold file 0644 0:0\nnew none\n"),
            "bad.patch:2:1: x: expected 'sha256 HEX' of the file this entry removes");
  EXPECT_EQ(parse_error("kiln-patch 1\ndiff x\nold none\nnew file 0644 0:0\n--- /dev/null\n+++ b/x\n@@ -0,0 +1,2 @@\n+a\n"),
            "bad.patch:9:1: expected 1 more lines of the hunk at line 7, found the end of the patch");
  EXPECT_EQ(parse_error("kiln-patch 1\ndiff x\nold none\nnew file 0644 0:0\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n*a\n"),
            "bad.patch:8:1: expected 1 more lines of the hunk at line 7 (' ' context, '-' removed, '+' added)");
  EXPECT_EQ(parse_error("kiln-patch 1\ndiff x\nold none\nnew file 0644 0:0\n--- /dev/null\n+++ b/x\n@@ zero @@\n"),
            "bad.patch:7:1: expected a hunk header like '@@ -1,3 +1,4 @@'");
  EXPECT_EQ(parse_error("kiln-patch 1\ndiff x\nold none\nnew file 0644 0:0\nbase64 3\nAAA=\n"),
            "bad.patch:6:1: expected valid base64 for 3 bytes");
  EXPECT_EQ(parse_error("kiln-patch 1\ndiff x\nold none\nnew directory 0755 0:0\n\ndiff x\nold none\nnew none\n"),
            "bad.patch:6:1: x: expected an old or a new state other than none");
  EXPECT_EQ(parse_error("kiln-patch 1\ndiff x\nold none\nnew directory 0755 0:0\n\ndiff x\nold none\n"
                        "new directory 0755 0:0\n"),
            "bad.patch:6:1: expected each path once; x has an entry already");
  EXPECT_EQ(parse_error("kiln-patch 1\ndiff x\nold none\nnew directory 0755 0:0\nsurprise\n"),
            "bad.patch:5:1: expected a blank line or the next 'diff PATH', found 'surprise'");
}

TEST(TreePatchSyntax, TheExampleInTheFormatDocumentReads) {
  std::string doc = read_text(testing::source_path("docs/patch-format.md"));
  size_t start = doc.find("```\nkiln-patch 1\n") + 4;
  std::string example = doc.substr(start, doc.find("```", start) - start);
  auto patch = parse_tree_patch(example, "patch-format.md");
  ASSERT_TRUE(patch) << patch.error().to_string();
  ASSERT_EQ(patch->entries.size(), 5u);
  EXPECT_EQ(patch->entries[2].old_sha256, sha256_hex("hello\n"));
  EXPECT_EQ(patch->entries[4].new_content, std::string("\x7f" "ELF\2\1\1\0", 8));
  EXPECT_EQ(write_tree_patch(*patch), example);
}

TEST(TreePatchSyntax, QuotedPathsAndEmptyContextLinesRead) {
  auto patch = parse_tree_patch("kiln-patch 1\n# made by hand\n\ndiff \"etc/a \\\"b\\\"\\tc\\001\"\n"
                                "old file 0644 0:0\nnew file 0644 0:0\n"
                                "--- \"a/etc/a \\\"b\\\"\\tc\\001\"\n+++ \"b/etc/a \\\"b\\\"\\tc\\001\"\n"
                                "@@ -1,3 +1,3 @@\n x\n\n-y\n+z\n",
                                "hand.patch");
  ASSERT_TRUE(patch) << patch.error().to_string();
  EXPECT_EQ(patch->comments, std::vector<std::string>{"made by hand"});
  ASSERT_EQ(patch->entries.size(), 1u);
  EXPECT_EQ(patch->entries[0].path, "etc/a \"b\"\tc\001");
  EXPECT_EQ(apply_hunks("x\n\ny\n", patch->entries[0].hunks).text, "x\n\nz\n");
}

}  // namespace
}  // namespace kiln
