// The container runner: a domain composed from canned archives and a
// per-domain patch, each archive fetched once, forks only where asked,
// signatures checked on everything before anything changes, and bad input
// (a missing URI, a patch that does not apply) refused with nothing
// modified.
#include "container/container_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "container/tree_patching.h"
#include "base/hash.h"
#include "formats/ext4/ext4_image.h"
#include "formats/tree/rootfs_tree.h"
#include "formats/tree/tree_patch.h"
#include "tests/feeds/test_http_server.h"
#include "tests/crypto/gpg_test_home.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::read_text;
using testing::write_text;

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class ContainerRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A canned /etc, as an archive in the "image store" served over HTTP.
    write_text(dir_ / "tree/etc/hostname", "debian\n");
    write_text(dir_ / "tree/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    write_text(dir_ / "tree/etc/group", "root:x:0:\nusers:x:100:\n");
    fs::create_directories(dir_ / "store");
    fs::create_directories(dir_ / "images");
    ASSERT_TRUE(write_tree_as_archive(dir_ / "tree/etc", dir_ / "store/etc.cpio.gz",
                                      {ArchiveFormat::kCpioNewc, ArchiveCompression::kGzip}, 0));
    // fido's patch: its hostname and a user.
    write_text(dir_ / "fido/hostname", "fido\n");
    write_text(dir_ / "fido/passwd", "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:100::/home/alice:/bin/sh\n");
    write_text(dir_ / "fido/group", "root:x:0:\nusers:x:100:alice\n");
    auto patch = diff_paths(dir_ / "tree/etc", dir_ / "fido", dir_.path());
    ASSERT_TRUE(patch) << patch.error().to_string();
    write_text(dir_ / "store/fido-etc.patch", write_tree_patch(*patch));
  }

  Result<ContainerResult> run(const std::string& text, ContainerOptions options = {}) {
    write_text(dir_ / "fido.domain", text);
    options.container_file = dir_ / "fido.domain";
    if (options.stripped.empty()) options.stripped = dir_ / "fido.cfg";
    if (options.log.empty()) options.log = dir_ / "fido.log";
    options.work_dir = dir_ / "work";
    options.mtime = 1700000000;
    return run_container(options, Reporter::quiet());
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string in_image(const std::string& image, const std::string& file) {
    auto opened = Ext4Image::open(dir_ / image, 0, false);
    EXPECT_TRUE(opened) << opened.error().to_string();
    auto text = opened->read_file(file);
    return text ? *text : "(" + text.error().message + ")";
  }
  std::string file_hash(const std::string& name) {
    auto digest = file_digest_hex(dir_ / name);
    return digest ? *digest : "";
  }

  testing::ScratchDir dir_;
};

TEST_F(ContainerRunnerTest, ComposesADomainFromCannedPartsAndWritesTheStrippedConfig) {
  std::string domain = "name = \"fido\"\nmemory = 128\n"
                       "[create\n " + path("tree/etc/") + "\n file://" + path("images/etc.cpio.gz") + "\n][end]\n"
                       "[image " + path("images/fido-etc") + "\n 16MB\n fido_etc] [end]\n"
                       "[populate image\n " + path("images/fido-etc") + "\n /mnt/\n file://" + path("images/etc.cpio.gz") +
                       "\n][end]\n"
                       "[patch\n file://" + path("images/fido-etc") + "\n " + path("store/fido-etc.patch") + "\n][end]\n"
                       "disk = ['file:" + path("images/fido-etc") + ",xvda1,w']\n";
  auto result = run(domain);
  ASSERT_TRUE(result) << result.error().to_string();
  ASSERT_EQ(result->steps.size(), 4u);
  EXPECT_EQ(result->domain.name, "fido");
  EXPECT_EQ(read_text(dir_ / "fido.cfg"),
            "name = \"fido\"\nmemory = 128\ndisk = ['file:" + path("images/fido-etc") + ",xvda1,w']\n");
  // [create] made a gzip'd cpio newc of the tree's contents.
  auto form = archive_form_of(dir_ / "images/etc.cpio.gz");
  ASSERT_TRUE(form);
  EXPECT_EQ(*form, (ArchiveForm{ArchiveFormat::kCpioNewc, ArchiveCompression::kGzip}));
  // [image] made a 16MB ext3 labelled fido_etc; populate and patch filled it.
  EXPECT_EQ(fs::file_size(dir_ / "images/fido-etc"), 16'000'000u);
  auto blkid = testing::run_program({"blkid", "-o", "export", path("images/fido-etc")});
  EXPECT_THAT(blkid.out, HasSubstr("LABEL=fido_etc"));
  EXPECT_THAT(blkid.out, HasSubstr("TYPE=ext3"));
  EXPECT_EQ(in_image("images/fido-etc", "/hostname"), "fido\n");
  EXPECT_THAT(in_image("images/fido-etc", "/passwd"), HasSubstr("alice:x:1000"));
  auto fsck = testing::run_program({"e2fsck", "-fn", path("images/fido-etc")});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  std::string log = read_text(dir_ / "fido.log");
  EXPECT_THAT(log, HasSubstr("[populate image] at " + path("fido.domain") + ":10:1: expanded"));
  EXPECT_THAT(log, HasSubstr("wrote the stripped Xen config"));
}

TEST_F(ContainerRunnerTest, EachArchiveIsFetchedOnceAndLaterExpressionsSeeTheEdits) {
  testing::TestHttpServer server(dir_ / "store", dir_ / "requests.log");
  write_text(dir_ / "store/resolv.conf", "nameserver 192.0.2.53\n");
  std::string etc = server.url("etc.cpio.gz");
  auto result = run("[replace /hostname\narchive " + etc + "\npatch file://" + path("out/hostname.patch") +
                    "\n\nrex\n\n] [end]\n"
                    "[copy /resolv.conf\n " + server.url("resolv.conf") + "\n archive " + etc + "\n fork " +
                    path("out/rex-etc.cpio.gz") + "\n][end]\n"
                    "[image " + path("images/rex-etc") + " 8M rex_etc ext4][end]\n"
                    "[populate image " + path("images/rex-etc") + " /mnt/ " + etc + "][end]\n");
  ASSERT_TRUE(result) << result.error().to_string();
  EXPECT_EQ(count(server.requests(), "GET /etc.cpio.gz -"), 1u) << server.requests();
  EXPECT_EQ(result->fetched, 2u);
  // The image got both edits, from the working copy.
  EXPECT_EQ(in_image("images/rex-etc", "/hostname"), "rex\n");
  EXPECT_EQ(in_image("images/rex-etc", "/resolv.conf"), "nameserver 192.0.2.53\n");
  EXPECT_EQ(in_image("images/rex-etc", "/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
  // The fork holds both too, in the original's form; the original is untouched.
  auto fork_form = archive_form_of(dir_ / "out/rex-etc.cpio.gz");
  ASSERT_TRUE(fork_form);
  EXPECT_EQ(*fork_form, (ArchiveForm{ArchiveFormat::kCpioNewc, ArchiveCompression::kGzip}));
  fs::create_directories(dir_ / "forked");
  ASSERT_TRUE(extract_to_tree(dir_ / "out/rex-etc.cpio.gz", dir_ / "forked"));
  EXPECT_EQ(read_text(dir_ / "forked/hostname"), "rex\n");
  EXPECT_EQ(read_text(dir_ / "forked/resolv.conf"), "nameserver 192.0.2.53\n");
  // The patch option recorded only the replace: original against modified.
  std::string patch = read_text(dir_ / "out/hostname.patch");
  EXPECT_THAT(patch, HasSubstr("-debian\n+rex\n"));
  EXPECT_THAT(patch, Not(HasSubstr("resolv.conf")));
  fs::create_directories(dir_ / "original");
  ASSERT_TRUE(extract_to_tree(dir_ / "store/etc.cpio.gz", dir_ / "original"));
  EXPECT_EQ(read_text(dir_ / "original/hostname"), "debian\n");
  auto parsed = parse_tree_patch(patch, "hostname.patch");
  ASSERT_TRUE(parsed);
  auto applied = apply_patch_to(*parsed, "hostname.patch", {dir_ / "original", {}, dir_.path(), 1});
  ASSERT_TRUE(applied) << applied.error().to_string();
  EXPECT_EQ(read_text(dir_ / "original/hostname"), "rex\n");
}

TEST_F(ContainerRunnerTest, ForksHappenOnlyWhereTheFileAsksAndUploadsGoByPut) {
  testing::TestHttpServer server(dir_ / "store", dir_ / "requests.log");
  std::string before = file_hash("store/etc.cpio.gz");
  auto listing = testing::list_tree(dir_ / "store");
  auto result = run("[replace /hostname archive " + server.url("etc.cpio.gz") + "\n\nrex\n] [end]\n"
                    "[create " + path("tree/etc") + " " + server.url("uploads/etc-copy.cpio.xz") + "][end]\n");
  ASSERT_TRUE(result) << result.error().to_string();
  EXPECT_EQ(file_hash("store/etc.cpio.gz"), before);
  auto after = testing::list_tree(dir_ / "store");
  listing.push_back("uploads");
  listing.push_back("uploads/etc-copy.cpio.xz");
  std::sort(listing.begin(), listing.end());
  EXPECT_EQ(after, listing);
  EXPECT_THAT(server.requests(), HasSubstr("PUT /uploads/etc-copy.cpio.xz"));
  auto form = archive_form_of(dir_ / "store/uploads/etc-copy.cpio.xz");
  ASSERT_TRUE(form);
  EXPECT_EQ(form->compression, ArchiveCompression::kXz);
  EXPECT_TRUE(testing::list_tree(dir_ / "work").empty()) << "the working copies outlived the run";
}

TEST_F(ContainerRunnerTest, AMissingUriStopsTheRunBeforeAnythingIsMade) {
  testing::TestHttpServer server(dir_ / "store", dir_ / "requests.log");
  auto result = run("[image " + path("images/x") + " 8M x][end]\n"
                    "[populate image " + path("images/x") + " /mnt/ " + server.url("missing.cpio.gz") + "][end]\n");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().to_string(),
            "[populate image] at " + path("fido.domain") + ":2:1: cannot fetch the archive: " +
                server.url("missing.cpio.gz") + ": the server answered HTTP 404 (not found)");
  EXPECT_FALSE(fs::exists(dir_ / "images/x"));
  EXPECT_THAT(read_text(dir_ / "fido.log"), HasSubstr("failed: [populate image]"));
  EXPECT_FALSE(fs::exists(dir_ / "fido.cfg"));

  auto local = run("[populate image " + path("images/x") + " /mnt/ " + path("store/nothing.cpio") + "][end]\n");
  ASSERT_FALSE(local);
  EXPECT_EQ(local.error().message, "[populate image] at " + path("fido.domain") + ":1:1: the archive " +
                                       path("store/nothing.cpio") + ": no such file");

  // Nothing listens on port 9 (discard) here: the host is unreachable.
  auto unreachable = run("[populate image " + path("images/x") + " /mnt/ http://127.0.0.1:9/etc.cpio.gz][end]\n");
  ASSERT_FALSE(unreachable);
  EXPECT_THAT(unreachable.error().message,
              HasSubstr("[populate image] at " + path("fido.domain") +
                        ":1:1: cannot fetch the archive: http://127.0.0.1:9/etc.cpio.gz: "));
  EXPECT_THAT(unreachable.error().message, HasSubstr("Failed to connect to 127.0.0.1 port 9"));
}

TEST_F(ContainerRunnerTest, APatchThatDoesNotApplyLeavesTheImageAsItWas) {
  ASSERT_TRUE(run("[image " + path("images/rex-etc") + " 8M rex_etc][end]\n"
                  "[populate image " + path("images/rex-etc") + " /mnt/ " + path("store/etc.cpio.gz") + "][end]\n"
                  "[replace /hostname archive " + path("store/etc.cpio.gz") + " fork " + path("store/rex.cpio.gz") +
                  "\n\nrex\n] [end]\n"
                  "[populate image " + path("images/rex-etc") + " /mnt/ " + path("store/rex.cpio.gz") + "][end]\n"));
  std::string before = file_hash("images/rex-etc");
  auto result = run("[patch " + path("images/rex-etc") + " " + path("store/fido-etc.patch") + "][end]\n");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().kind, ErrorKind::kBadInput);
  EXPECT_THAT(result.error().to_string(), HasSubstr("does not apply to the image " + path("images/rex-etc")));
  EXPECT_THAT(result.error().to_string(),
              HasSubstr(path("store/fido-etc.patch") + ":19: hostname: hunk 1 @@ -1 +1 @@ does not apply: line 1 "
                        "reads \"rex\" where the patch expects \"debian\""));
  EXPECT_EQ(file_hash("images/rex-etc"), before);
}

TEST_F(ContainerRunnerTest, ARemoteTargetWithoutAForkIsRefusedBeforeFetching) {
  auto result = run("[patch http://127.0.0.1:9/etc.cpio.gz " + path("store/fido-etc.patch") + "][end]\n");
  ASSERT_FALSE(result);
  EXPECT_THAT(result.error().message, HasSubstr("give a third field, the URI where the patched copy goes"));
}

// --- Signatures -------------------------------------------------------------

class ContainerSignatureTest : public ContainerRunnerTest {
 protected:
  void SetUp() override {
    ContainerRunnerTest::SetUp();
    keyring_ = trusted_.export_public(dir_ / "trusted.gpg");
  }

  void sign(const std::string& name, const testing::GpgTestHome& key) {
    auto signed_ = testing::run_program({"gpg", "--batch", "--yes", "--armor", "--detach-sign", "--output",
                                         path(name) + ".asc", path(name)},
                                        key.env());
    ASSERT_EQ(signed_.exit_code, 0) << signed_.err;
  }

  // A domain from the signed store; the target image exists beforehand, so
  // that "nothing modified" can be checked on it.
  std::string domain() {
    return "[image " + path("images/new") + " 8M new][end]\n"
           "[populate image " + path("images/fido-etc") + " /mnt/ " + path("store/etc.cpio.gz") + "][end]\n"
           "[patch " + path("images/fido-etc") + " " + path("store/fido-etc.patch") + "][end]\n";
  }

  Result<ContainerResult> run_signed(bool require) {
    ContainerOptions options;
    options.keyring = keyring_;
    options.require_signatures = require;
    return run(domain(), options);
  }

  void make_target() {
    auto image = Ext4Image::format(dir_ / "images/fido-etc", {8 << 20, 0, "ext4", "fido_etc", Uuid::from_name("a"),
                                                             Uuid::from_name("b"), 1700000000});
    ASSERT_TRUE(image);
    ASSERT_TRUE(image->close());
    target_hash_ = file_hash("images/fido-etc");
  }

  void expect_nothing_modified() {
    EXPECT_EQ(file_hash("images/fido-etc"), target_hash_);
    EXPECT_FALSE(fs::exists(dir_ / "images/new"));
  }

  testing::GpgTestHome trusted_{"Kiln Images"};
  fs::path keyring_;
  std::string target_hash_;
};

TEST_F(ContainerSignatureTest, EverythingSignedByATrustedKeyRuns) {
  make_target();
  write_text(dir_ / "fido.domain", domain());
  for (const char* name : {"fido.domain", "store/etc.cpio.gz", "store/fido-etc.patch"}) sign(name, trusted_);
  auto result = run_signed(true);
  ASSERT_TRUE(result) << result.error().to_string();
  ASSERT_EQ(result->verified.size(), 3u);
  EXPECT_THAT(result->verified[0], HasSubstr("fido.domain: good signature by Kiln Images <kiln.images@kiln.invalid>"));
  EXPECT_EQ(in_image("images/fido-etc", "/hostname"), "fido\n");
}

TEST_F(ContainerSignatureTest, ATamperedPatchIsRefusedWithNothingModified) {
  make_target();
  write_text(dir_ / "fido.domain", domain());
  for (const char* name : {"fido.domain", "store/etc.cpio.gz", "store/fido-etc.patch"}) sign(name, trusted_);
  std::string patch = read_text(dir_ / "store/fido-etc.patch");
  patch.replace(patch.find("+fido"), 5, "+evil");
  write_text(dir_ / "store/fido-etc.patch", patch);
  auto result = run_signed(true);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().kind, ErrorKind::kUntrusted);
  EXPECT_THAT(result.error().to_string(),
              HasSubstr("[patch] at " + path("fido.domain") + ":3:1: the patch " + path("store/fido-etc.patch")));
  expect_nothing_modified();
}

TEST_F(ContainerSignatureTest, AnUnsignedArchiveIsRefusedUnderRequireSignatures) {
  make_target();
  write_text(dir_ / "fido.domain", domain());
  for (const char* name : {"fido.domain", "store/fido-etc.patch"}) sign(name, trusted_);
  auto result = run_signed(true);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().kind, ErrorKind::kUntrusted);
  EXPECT_THAT(result.error().message,
              HasSubstr("[populate image] at " + path("fido.domain") + ":2:1: the archive " +
                        path("store/etc.cpio.gz") + " has no signature " + path("store/etc.cpio.gz") + ".asc"));
  expect_nothing_modified();
  // Without --require-signatures the unsigned archive is only noted.
  auto lenient = run_signed(false);
  ASSERT_TRUE(lenient) << lenient.error().to_string();
  EXPECT_THAT(read_text(dir_ / "fido.log"), HasSubstr("archive " + path("store/etc.cpio.gz") + " is not signed"));
}

TEST_F(ContainerSignatureTest, AContainerFileSignedByAnUntrustedKeyIsRefused) {
  make_target();
  testing::GpgTestHome stranger{"Mallory"};
  write_text(dir_ / "fido.domain", domain());
  sign("fido.domain", stranger);
  for (const char* name : {"store/etc.cpio.gz", "store/fido-etc.patch"}) sign(name, trusted_);
  for (bool require : {true, false}) {
    auto result = run_signed(require);
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().kind, ErrorKind::kUntrusted);
    EXPECT_THAT(result.error().message, HasSubstr("the container file " + path("fido.domain")));
    expect_nothing_modified();
  }
}

TEST_F(ContainerSignatureTest, RequireSignaturesNeedsAKeyring) {
  ContainerOptions options;
  options.require_signatures = true;
  auto result = run(domain(), options);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message, "--require-signatures needs --keyring FILE: the keys to trust");
}

}  // namespace
}  // namespace kiln
