// Every way a hostile archive reaches kiln from the command line: `kiln
// diff` (which looks read-only), `kiln patch`, `kiln make-fs`, `kiln
// import` (of a bundle), each container expression that reads an archive,
// and a recipe's bootstrap.from. Whatever kiln answers, a canary directory outside the tree
// stays byte for byte as it was, no file kiln leaves is a hardlink to it,
// and an image kiln refused to finish is exactly the image it was.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/builder/fake_rootfs.h"
#include "tests/formats/hostile_archives.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::Canary;
using testing::HostileArchive;
using testing::HostileForm;
using testing::ProcessResult;
using testing::run_kiln;
using testing::run_program;
using testing::write_text;

struct HostileCase {
  HostileArchive archive;
  HostileForm form;
};

void PrintTo(const HostileCase& c, std::ostream* out) { *out << c.archive.name << " as " << testing::form_name(c.form); }

// pax and cpio: the two archive readers' paths (gnutar adds nothing at
// this level that the extraction tests do not cover).
std::vector<HostileCase> cases() {
  std::vector<HostileCase> out;
  for (const HostileArchive& archive : testing::hostile_archives())
    for (HostileForm form : testing::hostile_forms(archive))
      if (form != HostileForm::kGnuTar) out.push_back({archive, form});
  return out;
}

// An answer kiln may give to hostile input: done, or refused as bad input.
::testing::AssertionResult done_or_refused(const ProcessResult& result) {
  if (result.exit_code == 0 || result.exit_code == 2) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "exit " << result.exit_code << ": " << result.err;
}

class HostileInput : public ::testing::TestWithParam<HostileCase> {
 protected:
  void SetUp() override {
    archive_ = testing::write_hostile(GetParam().archive, GetParam().form, canary_, dir_ / "hostile.archive");
  }

  void TearDown() override {
    EXPECT_TRUE(canary_.untouched());
    EXPECT_TRUE(canary_.not_linked_from(dir_.path() / "work"));
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  testing::ScratchDir dir_;
  Canary canary_{dir_ / "outside"};
  fs::path archive_;
};

TEST_P(HostileInput, Diff) {
  write_text(dir_ / "work/plain/etc/hostname", "debian\n");
  EXPECT_TRUE(done_or_refused(run_kiln({"diff", archive_.string(), path("work/plain"), "-o", path("work/p")})));
  EXPECT_TRUE(done_or_refused(run_kiln({"diff", path("work/plain"), archive_.string(), "-o", path("work/p")})));
}

TEST_P(HostileInput, PatchAppliedToTheArchive) {
  write_text(dir_ / "work/a/etc/hostname", "debian\n");
  write_text(dir_ / "work/b/etc/hostname", "fido\n");
  ASSERT_EQ(run_kiln({"diff", path("work/a"), path("work/b"), "-o", path("work/fido.patch")}).exit_code, 0);
  EXPECT_TRUE(done_or_refused(run_kiln({"patch", archive_.string(), path("work/fido.patch"), "-o",
                                        path("work/out.archive")})));
  EXPECT_TRUE(done_or_refused(run_kiln({"patch", archive_.string(), path("work/fido.patch")})));
}

TEST_P(HostileInput, MakeFs) {
  fs::create_directories(dir_ / "work");
  auto made = run_kiln({"make-fs", archive_.string(), path("work/fs.img")});
  EXPECT_TRUE(done_or_refused(made));
  if (made.exit_code == 0) {
    auto check = run_program({"e2fsck", "-fn", path("work/fs.img")});
    EXPECT_EQ(check.exit_code, 0) << check.out;
  } else {
    EXPECT_FALSE(fs::exists(dir_ / "work/fs.img")) << "a refused image was left under its name";
  }
}

TEST_P(HostileInput, ImportAsABundle) {
  fs::create_directories(dir_ / "work");
  auto imported = run_kiln({"import", archive_.string(), "-o", path("work/out")});
  EXPECT_TRUE(done_or_refused(imported));
  EXPECT_NE(imported.exit_code, 0) << "the corpus holds no Xen config";
  EXPECT_THAT(testing::list_tree(dir_ / "work"), ::testing::IsEmpty()) << "no output, no staging directory";
}

TEST_P(HostileInput, ContainerExpressions) {
  fs::create_directories(dir_ / "work");
  fs::copy_file(archive_, dir_ / "work/etc.archive");
  write_text(dir_ / "work/resolv.conf", "nameserver 192.0.2.1\n");
  write_text(dir_ / "work/a/etc/hostname", "debian\n");
  write_text(dir_ / "work/b/etc/hostname", "fido\n");
  ASSERT_EQ(run_kiln({"diff", path("work/a"), path("work/b"), "-o", path("work/fido.patch")}).exit_code, 0);
  const std::vector<std::string> expressions = {
      "[replace /etc/motd archive etc.archive fork replaced.archive\n\nhello\n] [end]\n",
      "[copy /etc/resolv.conf resolv.conf archive etc.archive fork copied.archive][end]\n",
      "[image fs.img 16M fs ext4][end]\n[populate image fs.img /mnt etc.archive][end]\n",
      "[patch etc.archive fido.patch patched.archive][end]\n",
  };
  for (const std::string& expression : expressions) {
    write_text(dir_ / "work/domain.cfg", "name = \"fido\"\n" + expression);
    auto run = run_kiln({"container", path("work/domain.cfg"), "--stripped", path("work/fido.cfg")});
    EXPECT_TRUE(done_or_refused(run)) << expression;
    EXPECT_TRUE(canary_.untouched()) << expression;
  }
}

TEST_P(HostileInput, BootstrapFrom) {
  fs::create_directories(dir_ / "work");
  // The fake rootfs, then the hostile entries; a `run` step makes kiln
  // unpack the tree for the chroot.
  testing::write_fake_rootfs(dir_ / "work/rootfs.tar", [&](testing::ArchiveBuilder& tar) {
    GetParam().archive.add(tar, canary_.path().string());
  });
  write_text(dir_ / "work/r.toml", "[image]\nname = \"hostile\"\n[bootstrap]\nfrom = \"rootfs.tar\"\n"
                                   "[storage]\nsize = \"256M\"\n[customize]\nrun = [\"true\"]\n");
  auto bake = run_kiln({"bake", path("work/r.toml"), "-o", path("work/out"), "--cache", path("work/cache")},
                       {"SOURCE_DATE_EPOCH=1700000000"});
  EXPECT_TRUE(done_or_refused(bake));
}

INSTANTIATE_TEST_SUITE_P(Corpus, HostileInput, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<HostileCase>& info) {
                           return info.param.archive.name + "_" + testing::form_name(info.param.form);
                         });

// Failures half-way: the image is the image it was, and e2fsck finds it clean.
class HalfWay : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string sha256(const std::string& file) { return run_program({"sha256sum", file}).out.substr(0, 64); }
  void expect_clean(const std::string& image) {
    auto check = run_program({"e2fsck", "-fn", image});
    EXPECT_EQ(check.exit_code, 0) << check.out;
  }
  testing::ScratchDir dir_;
};

TEST_F(HalfWay, APatchThroughADanglingSymlinkLeavesTheImageAsItWas) {
  testing::ArchiveBuilder tree;
  tree.directory("srv").symlink("etc", "/nowhere").file("srv/kept", "kept\n");
  tree.write_to(dir_ / "tree.tar");
  ASSERT_EQ(run_kiln({"make-fs", path("tree.tar"), path("fs.img")}).exit_code, 0);
  write_text(dir_ / "a/keep", "");
  write_text(dir_ / "b/keep", "");
  write_text(dir_ / "b/etc/motd", "hello\n");
  ASSERT_EQ(run_kiln({"diff", path("a"), path("b"), "-o", path("p.patch")}).exit_code, 0);
  // Drop the "etc" entry: the image has etc, as a symlink that leads nowhere.
  std::string patch = testing::read_text(dir_ / "p.patch");
  size_t etc = patch.find("\ndiff etc\n");
  ASSERT_NE(etc, std::string::npos) << patch;
  patch.erase(etc, patch.find("\ndiff", etc + 1) - etc);
  write_text(dir_ / "p.patch", patch);
  std::string before = sha256(path("fs.img"));
  auto applied = run_kiln({"patch", path("fs.img"), path("p.patch")});
  EXPECT_EQ(applied.exit_code, 2);
  EXPECT_THAT(applied.err, HasSubstr("its directory /etc (which leads to /nowhere) is not in the image"));
  EXPECT_EQ(sha256(path("fs.img")), before);
  expect_clean(path("fs.img"));
}

TEST_F(HalfWay, APopulateThatFailsLeavesTheImageAsItWas) {
  testing::ArchiveBuilder archive;
  archive.directory("etc").file("etc/hostname", "fido\n").file("big", std::string(24 << 20, 'x'));
  archive.write_to(dir_ / "etc.tar");
  write_text(dir_ / "domain.cfg", "name = \"fido\"\n[image fs.img 8M fs ext4][end]\n");
  ASSERT_EQ(run_kiln({"container", path("domain.cfg"), "--stripped", path("fido.cfg")}).exit_code, 0);
  std::string before = sha256(path("fs.img"));
  write_text(dir_ / "domain.cfg", "name = \"fido\"\n[populate image fs.img /mnt etc.tar][end]\n");
  auto run = run_kiln({"container", path("domain.cfg"), "--stripped", path("fido.cfg")});
  EXPECT_EQ(run.exit_code, 4) << run.err;
  EXPECT_EQ(sha256(path("fs.img")), before);
  expect_clean(path("fs.img"));
  EXPECT_THAT(testing::list_tree(dir_.path()), ::testing::Not(::testing::Contains(HasSubstr(".kiln-"))));
}

}  // namespace
}  // namespace kiln
