// PublishedSiteTest: the fixture of the publish and pull tests. It has a
// publisher's and a stranger's throwaway OpenPGP keys, a small fake bake,
// and helpers to publish it with the real `kiln publish`, to pull with the
// real `kiln pull`, and to take an xvm apart and put it back together the
// way an attacker (or a broken mirror) would: with or without re-signing.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "base/hash.h"
#include "crypto/openpgp.h"
#include "feeds/vmcast_feed.h"
#include "feeds/xvm_archive.h"
#include "feeds/xvm_package.h"
#include "tests/crypto/gpg_test_home.h"
#include "tests/feeds/fake_bake.h"
#include "tests/formats/archive_builder.h"
#include "tests/test_support.h"

namespace kiln::testing {

using Members = std::vector<std::pair<std::string, std::string>>;

class PublishedSiteTest : public ::testing::Test {
 protected:
  // Keys and the bake are the same for every test of a suite.
  static void SetUpTestSuite() {
    publisher_ = new GpgTestHome("Kiln Publisher");
    stranger_ = new GpgTestHome("Somebody Else");
    shared_ = new ScratchDir;
    write_fake_bake(*shared_ / "bake-1.0", "fake", "1.0");
    write_fake_bake(*shared_ / "bake-2.0", "fake", "2.0");
    write_fake_bake(*shared_ / "other-1.0", "other", "1.0");
    publisher_->export_public(*shared_ / "trusted.gpg");
    stranger_->export_public(*shared_ / "stranger.gpg");
  }
  static void TearDownTestSuite() {
    delete shared_;
    delete stranger_;
    delete publisher_;
  }

  std::filesystem::path bake(const std::string& which = "bake-1.0") const { return *shared_ / which; }
  std::filesystem::path keyring() const { return *shared_ / "trusted.gpg"; }
  std::filesystem::path stranger_keyring() const { return *shared_ / "stranger.gpg"; }
  std::filesystem::path site() const { return dir_ / "site"; }
  std::filesystem::path xvm(const std::string& stem = "fake-1.0") const { return site() / (stem + ".xvm"); }
  std::filesystem::path out() const { return dir_ / "outputs" / "out"; }
  std::string file_url() const { return "file://" + site().string() + "/"; }

  ProcessResult publish(const std::filesystem::path& bake_dir, const std::string& base_url,
                        std::vector<std::string> more = {"--no-virt-builder"}, std::vector<std::string> env = {}) {
    std::vector<std::string> args = {"publish", bake_dir.string(), "--feed", site().string(), "--base-url", base_url,
                                     "--sign-key", publisher_->fingerprint()};
    args.insert(args.end(), more.begin(), more.end());
    for (const std::string& entry : publisher_->env()) env.push_back(entry);
    auto done = run_kiln(args, env);
    EXPECT_EQ(done.exit_code, 0) << done.err;
    return done;
  }

  // What pull remembers of the feeds it accepted: private to each test.
  std::filesystem::path state_home() const { return dir_ / "state"; }
  std::vector<std::string> pull_env() const {
    std::vector<std::string> env = publisher_->env();
    env.push_back("XDG_STATE_HOME=" + state_home().string());
    return env;
  }

  ProcessResult pull(const std::string& feed, std::vector<std::string> more = {}) {
    return pull_into(out(), feed, std::move(more));
  }
  ProcessResult pull_into(const std::filesystem::path& output, const std::string& feed,
                          std::vector<std::string> more = {}) {
    std::vector<std::string> args = {"pull", feed, "-o", output.string(), "--download-dir", (dir_ / "dl").string()};
    bool keyring_given = false;
    for (const std::string& arg : more) keyring_given = keyring_given || arg == "--keyring" || arg == "--no-verify";
    if (!keyring_given) args.insert(args.end(), {"--keyring", keyring().string()});
    args.insert(args.end(), more.begin(), more.end());
    // GNUPGHOME points at a home holding the publisher's key: pull must not use it.
    return run_kiln(args, pull_env());
  }

  std::string feed_file() const { return (site() / "vmcast.rss").string(); }

  // The refusal every bad input must end in: the exit code of its kind, the
  // cause in the message, and nothing in (or beside) the output directory.
  void expect_refused(const ProcessResult& result, int exit_code, const std::string& cause) {
    EXPECT_EQ(result.exit_code, exit_code) << result.err;
    EXPECT_THAT(result.err, ::testing::HasSubstr(cause));
    EXPECT_THAT(result.err, ::testing::StartsWith("kiln: error: ")) << result.err;
    EXPECT_THAT(list_tree(out().parent_path()), ::testing::IsEmpty()) << "the output directory was touched";
  }

  // The members of an xvm, in order, with their bytes.
  static Members members_of(const std::filesystem::path& archive) {
    auto opened = XvmArchive::open(archive);
    EXPECT_TRUE(opened) << opened.error().to_string();
    Members out;
    for (const XvmMember& member : opened->members()) out.emplace_back(member.name, *opened->read(member, 1u << 30));
    return out;
  }
  static std::string& member(Members& members, const std::string& name) {
    for (auto& [member_name, bytes] : members)
      if (member_name == name) return bytes;
    throw std::runtime_error("no member " + name);
  }
  // Writes `members` as a plain tar at `archive`, names as given.
  static void repack(const std::filesystem::path& archive, const Members& members) {
    ArchiveBuilder builder(ArchiveFormat::kUstar);
    for (const auto& [name, bytes] : members) builder.file(name, bytes);
    builder.write_to(archive);
  }

  // Makes the feed describe the xvm as it now is (length, sha256) and signs
  // it again with the publisher's key: the feed then vouches for the
  // tampered archive, and only the checks inside it are left to catch it.
  void refeed(const std::string& stem = "fake-1.0") {
    edit_feed([&](VmcastItem& item) {
      if (item.image_name + "-" + item.image_version != stem) return;
      item.enclosure->length = std::filesystem::file_size(xvm(stem));
      item.sha256 = *file_digest_hex(xvm(stem));
    });
  }
  // Passes every item of the site's feed through `edit`, sets the channel's
  // valid-until when one is given, and signs the feed with the publisher's key.
  void edit_feed(const std::function<void(VmcastItem&)>& edit, const std::string& valid_until = "") {
    auto text = read_text(site() / "vmcast.rss");
    auto feed = parse_vmcast_feed(text, "vmcast.rss");
    ASSERT_TRUE(feed) << feed.error().to_string();
    auto doc = VmcastFeedDocument::parse(text, "vmcast.rss");
    ASSERT_TRUE(doc);
    for (VmcastItem item : feed->items) {
      edit(item);
      doc->upsert_item(item);
    }
    if (!valid_until.empty()) doc->set_valid_until(valid_until);
    write_text(site() / "vmcast.rss", doc->to_string());
    sign_feed(*publisher_);
  }
  void sign_feed(const GpgTestHome& signer) {
    auto key = SigningKey::open({signer.fingerprint(), signer.home(), ""});
    ASSERT_TRUE(key) << key.error().to_string();
    auto signature = key->sign_detached(read_text(site() / "vmcast.rss"));
    ASSERT_TRUE(signature);
    write_text(site() / "vmcast.rss.asc", *signature);
  }

  // A package with these members after the signed texts, signed by
  // `signer`, written over the xvm at `archive`.
  void forge_package(const std::filesystem::path& archive, const XvmDescription& description, const Members& payload,
                     const GpgTestHome& signer) {
    ScratchDir work;
    std::vector<PackageMember> members;
    for (const auto& [name, bytes] : payload) {
      write_text(work / ("payload-" + name), bytes);
      members.push_back({name, work / ("payload-" + name), Hasher(HashAlgorithm::kSha1).update(bytes).hex_digest(),
                         sha256_hex(bytes)});
    }
    auto key = SigningKey::open({signer.fingerprint(), signer.home(), ""});
    ASSERT_TRUE(key) << key.error().to_string();
    auto written = write_xvm_package(description, members, *key, work.path(), archive, 1700000000);
    ASSERT_TRUE(written) << written.error().to_string();
  }

  ScratchDir dir_;
  static inline GpgTestHome* publisher_ = nullptr;
  static inline GpgTestHome* stranger_ = nullptr;
  static inline ScratchDir* shared_ = nullptr;
};

}  // namespace kiln::testing
