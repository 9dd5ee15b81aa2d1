// `kiln pull`: a published image comes back byte for byte as a bake output;
// and every way an archive or feed can be bad (or be made bad) is refused
// with its cause named, before anything reaches the output directory.
#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "feeds/puller.h"
#include "feeds/xvm_xml.h"
#include "tests/feeds/published_site.h"
#include "tests/feeds/test_http_server.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::Members;
using testing::read_text;
using testing::run_program;
using testing::write_text;

constexpr int kUntrusted = 5;
constexpr int kBadInput = 2;
constexpr int kFailed = 1;

class PullTest : public testing::PublishedSiteTest {
 protected:
  // Publishes 1.0 for file:// pulls.
  void SetUp() override { publish(bake(), file_url()); }

  void expect_same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
    EXPECT_EQ(run_program({"cmp", a.string(), b.string()}).exit_code, 0) << a << " differs from " << b;
  }
};

TEST_F(PullTest, APublishedImageComesBackAsABakeOutput) {
  auto done = pull(feed_file());
  ASSERT_EQ(done.exit_code, 0) << done.err;
  EXPECT_THAT(done.out, HasSubstr("Pulled fake 1.0"));
  EXPECT_THAT(done.out, HasSubstr("signed by Kiln Publisher"));
  EXPECT_THAT(testing::list_tree(out()), ElementsAre("disk.raw", "fake.libvirt.xml", "fake.xl.cfg", "initrd.img",
                                                     "manifest.json", "root.img", "vmlinuz"));
  for (const char* file : {"disk.raw", "root.img", "vmlinuz", "initrd.img"}) expect_same_file(out() / file, bake() / file);
  // The images stay sparse.
  struct stat st;
  ASSERT_EQ(::stat((out() / "disk.raw").c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, std::filesystem::file_size(out() / "disk.raw") / 2);
  // Nothing is left beside it, and the finished download is gone.
  for (const std::string& name : testing::list_tree(out().parent_path()))
    EXPECT_TRUE(name == "out" || name.starts_with("out/")) << name;
  EXPECT_THAT(testing::list_tree(dir_ / "dl"), ::testing::IsEmpty());
}

TEST_F(PullTest, TheManifestListsThePulledFilesAndWhereTheyCameFrom) {
  ASSERT_EQ(pull(feed_file()).exit_code, 0);
  auto manifest = nlohmann::json::parse(read_text(out() / "manifest.json"));
  EXPECT_EQ(manifest["image"]["name"], "fake");
  EXPECT_EQ(manifest["image"]["version"], "1.0");
  ASSERT_EQ(manifest["artifacts"].size(), 6u);
  for (const auto& artifact : manifest["artifacts"]) {
    auto file = out() / artifact["file"].get<std::string>();
    EXPECT_EQ(artifact["size"], std::filesystem::file_size(file)) << file;
    EXPECT_EQ(artifact["sha256"], *file_digest_hex(file)) << file;
  }
  EXPECT_EQ(manifest["pulled"]["verified"], true);
  EXPECT_EQ(manifest["pulled"]["signed_by"], publisher_->fingerprint());
  EXPECT_EQ(manifest["pulled"]["enclosure"], file_url() + "fake-1.0.xvm");
  EXPECT_EQ(manifest["pulled"]["sha256"], *file_digest_hex(xvm()));
}

TEST_F(PullTest, TheDomainConfigsPointAtTheOutputDirectory) {
  ASSERT_EQ(pull(feed_file()).exit_code, 0);
  std::string xl = read_text(out() / "fake.xl.cfg");
  EXPECT_THAT(xl, HasSubstr("kernel = \"" + (out() / "vmlinuz").string() + "\""));
  EXPECT_THAT(xl, HasSubstr("file:" + (out() / "root.img").string() + ",xvda1,w"));
  EXPECT_THAT(xl, Not(HasSubstr(bake().string())));
  std::string libvirt = read_text(out() / "fake.libvirt.xml");
  EXPECT_THAT(libvirt, HasSubstr("<source file=\"" + (out() / "disk.raw").string() + "\""));
  EXPECT_THAT(libvirt, Not(HasSubstr(bake().string())));
}

TEST_F(PullTest, OverHttpTheFeedListsAndPulls) {
  std::filesystem::remove_all(site());
  testing::TestHttpServer server(site().parent_path(), dir_ / "requests.log");
  publish(bake(), server.url("site/"));
  publish(bake("other-1.0"), server.url("site/"));
  auto listed = pull(server.url("site/vmcast.rss"), {"--list"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("signed by Kiln Publisher"));
  EXPECT_THAT(listed.out, HasSubstr("fake"));
  EXPECT_THAT(listed.out, HasSubstr("other"));
  auto several = pull(server.url("site/vmcast.rss"));
  expect_refused(several, kBadInput, "the feed offers several images (\"other\", \"fake\"); choose one with --item NAME");
  auto done = pull(server.url("site/vmcast.rss"), {"--item", "other"});
  ASSERT_EQ(done.exit_code, 0) << done.err;
  EXPECT_EQ(nlohmann::json::parse(read_text(out() / "manifest.json"))["image"]["name"], "other");
  expect_same_file(out() / "disk.raw", bake("other-1.0") / "disk.raw");
}

TEST_F(PullTest, ANewerVersionReplacesTheOutputAndAnOlderOneIsRefused) {
  publish(bake("bake-2.0"), file_url());
  ASSERT_EQ(pull(feed_file()).exit_code, 0);
  EXPECT_EQ(nlohmann::json::parse(read_text(out() / "manifest.json"))["image"]["version"], "2.0")
      << "the newest version is the default";
  std::string before = read_text(out() / "manifest.json");
  auto older = pull(feed_file(), {"--item", "fake 1.0"});
  EXPECT_EQ(older.exit_code, kBadInput) << older.err;
  EXPECT_THAT(older.err, HasSubstr("holds \"fake 2.0\", newer than the \"1.0\" on offer; refusing a downgrade"));
  EXPECT_EQ(read_text(out() / "manifest.json"), before);
  auto allowed = pull(feed_file(), {"--item", "fake 1.0", "--allow-downgrade"});
  ASSERT_EQ(allowed.exit_code, 0) << allowed.err;
  expect_same_file(out() / "disk.raw", bake("bake-1.0") / "disk.raw");
  EXPECT_THAT(testing::list_tree(out().parent_path()), ElementsAre("out", "out/disk.raw", "out/fake.libvirt.xml",
                                                                    "out/fake.xl.cfg", "out/initrd.img",
                                                                    "out/manifest.json", "out/root.img", "out/vmlinuz"));
}

TEST_F(PullTest, ABrokenDownloadResumesWhereItStopped) {
  std::filesystem::remove_all(site());
  testing::TestHttpServer server(site().parent_path(), dir_ / "requests.log");
  publish(bake(), server.url("site/"));
  write_text(site() / "fake-1.0.xvm.truncate-at", "100000");
  auto broken = pull(server.url("site/vmcast.rss"));
  expect_refused(broken, kFailed, "downloading the enclosure of \"fake 1.0\"");
  EXPECT_THAT(broken.err, HasSubstr(server.url("site/fake-1.0.xvm")));
  auto parts = testing::list_tree(dir_ / "dl");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_THAT(parts[0], ::testing::EndsWith("fake-1.0.xvm.part"));
  EXPECT_EQ(std::filesystem::file_size(dir_ / "dl" / parts[0]), 100000u);

  std::filesystem::remove(site() / "fake-1.0.xvm.truncate-at");
  auto resumed = pull(server.url("site/vmcast.rss"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_THAT(resumed.out, HasSubstr("resumed"));
  EXPECT_THAT(server.requests(), HasSubstr("/site/fake-1.0.xvm bytes=100000-"));
  expect_same_file(out() / "disk.raw", bake() / "disk.raw");
}

TEST_F(PullTest, NoVerifyTakesAnUnsignedFeedWithAWarning) {
  std::filesystem::remove(site() / "vmcast.rss.asc");
  auto done = pull(feed_file(), {"--no-verify"});
  ASSERT_EQ(done.exit_code, 0) << done.err;
  EXPECT_THAT(done.err, HasSubstr("kiln: warning: --no-verify: signatures are NOT checked"));
  EXPECT_THAT(done.out, HasSubstr("NOT verified"));
  EXPECT_EQ(nlohmann::json::parse(read_text(out() / "manifest.json"))["pulled"]["verified"], false);
}

TEST_F(PullTest, WithoutAKeyringNothingIsTrusted) {
  auto done = testing::run_kiln({"pull", feed_file(), "-o", out().string(), "--download-dir", (dir_ / "dl").string()});
  expect_refused(done, kBadInput, "no trusted keys: give --keyring FILE");
}

// ---------------------------------------------------------------- bad input

TEST_F(PullTest, AnUnsignedFeedIsRefused) {
  std::filesystem::remove(site() / "vmcast.rss.asc");
  expect_refused(pull(feed_file()), kUntrusted, "the feed is unsigned: cannot get its signature");
}

TEST_F(PullTest, AFeedSignedByAnUntrustedKeyIsRefused) {
  sign_feed(*stranger_);
  auto done = pull(feed_file());
  expect_refused(done, kUntrusted, "vmcast.rss.asc: signed by key " + stranger_->fingerprint());
  EXPECT_THAT(done.err, HasSubstr("which is not among the trusted keys in " + keyring().string()));
}

TEST_F(PullTest, AFeedChangedAfterSigningIsRefused) {
  std::string text = read_text(site() / "vmcast.rss");
  text.replace(text.find("fake 1.0"), 8, "fake 9.9");
  write_text(site() / "vmcast.rss", text);
  expect_refused(pull(feed_file()), kUntrusted, "vmcast.rss.asc: BAD signature over");
}

TEST_F(PullTest, AnArchiveSignedByAnUntrustedKeyIsRefused) {
  Members members = members_of(xvm());
  auto description = parse_xvm_xml(member(members, "xvm.xml"), "xvm.xml");
  ASSERT_TRUE(description);
  Members payload(members.begin() + 6, members.end());
  forge_package(xvm(), *description, payload, *stranger_);
  refeed();
  expect_refused(pull(feed_file()), kUntrusted,
                 "fake-1.0.xvm: signature.asc: signed by key " + stranger_->fingerprint());
}

TEST_F(PullTest, AFlippedByteInAnImageIsCaughtByTheFeedsSha256) {
  Members members = members_of(xvm());
  member(members, "root.img.gz")[100] ^= 0x20;
  repack(xvm(), members);
  expect_refused(pull(feed_file()), kUntrusted, "but the feed says");
}

TEST_F(PullTest, AFlippedByteInAnImageIsCaughtByTheManifestsWhenTheFeedVouchesForIt) {
  Members members = members_of(xvm());
  member(members, "root.img.gz")[100] ^= 0x20;
  repack(xvm(), members);
  refeed();
  expect_refused(pull(feed_file()), kUntrusted, "member 'root.img.gz' does not match its");
}

TEST_F(PullTest, AChangedManifestIsCaughtByItsSignature) {
  Members members = members_of(xvm());
  std::string& manifest = member(members, "manifest.txt");
  manifest[0] = manifest[0] == '0' ? '1' : '0';
  repack(xvm(), members);
  refeed();
  expect_refused(pull(feed_file()), kUntrusted, "mf-signature.asc: BAD signature over manifest.txt");
}

TEST_F(PullTest, SignaturesSwappedBetweenFilesAreCaught) {
  Members members = members_of(xvm());
  std::swap(member(members, "signature.asc"), member(members, "mf-signature.asc"));
  repack(xvm(), members);
  refeed();
  expect_refused(pull(feed_file()), kUntrusted, "signature.asc: BAD signature over xvm.xml");
}

TEST_F(PullTest, AnUnsignedArchiveIsRefused) {
  Members members = members_of(xvm());
  std::erase_if(members, [](const auto& m) { return m.first.ends_with(".asc"); });
  repack(xvm(), members);
  refeed();
  expect_refused(pull(feed_file()), kUntrusted, "the archive is unsigned: it has no signature.asc");
}

TEST_F(PullTest, AMemberNoManifestListsIsRefused) {
  Members members = members_of(xvm());
  members.emplace_back("run-me.sh", "#!/bin/sh\n");
  repack(xvm(), members);
  refeed();
  expect_refused(pull(feed_file()), kUntrusted, "member 'run-me.sh' is not listed in manifest.txt");
}

TEST_F(PullTest, AnEnclosureThat404sIsRefused) {
  std::filesystem::remove_all(site());
  testing::TestHttpServer server(site().parent_path(), dir_ / "requests.log");
  publish(bake(), server.url("site/"));
  std::filesystem::remove(xvm());
  auto done = pull(server.url("site/vmcast.rss"));
  expect_refused(done, kFailed, "the server answered HTTP 404 (not found)");
  EXPECT_THAT(done.err, HasSubstr(server.url("site/fake-1.0.xvm")));
  EXPECT_THAT(testing::list_tree(dir_ / "dl"), ::testing::IsEmpty());
}

TEST_F(PullTest, MoreBytesThanTheEnclosureLengthAreRefused) {
  Members members = members_of(xvm());
  members.emplace_back("padding", std::string(10240, 'p'));  // the feed's length, now too small
  repack(xvm(), members);
  auto done = pull(feed_file());
  expect_refused(done, kUntrusted, "larger than the");
  EXPECT_THAT(done.err, HasSubstr("the feed's enclosure length is"));
}

TEST_F(PullTest, FewerBytesThanTheEnclosureLengthAreRefused) {
  std::string text = read_text(site() / "vmcast.rss");
  std::string length = std::to_string(std::filesystem::file_size(xvm()));
  text.replace(text.find("length=\"" + length + "\""), 9 + length.size(), "length=\"" + length + "0\"");
  write_text(site() / "vmcast.rss", text);
  sign_feed(*publisher_);
  expect_refused(pull(feed_file()), kUntrusted, "downloaded " + length + " bytes, but the feed's enclosure length says " +
                                                    length + "0");
}

TEST_F(PullTest, MemberNamesReachingOutsideAreRefused) {
  for (const char* name : {"../escaped", "/etc/escaped"}) {
    publish(bake(), file_url());
    Members members = members_of(xvm());
    members.emplace_back(name, "gotcha\n");
    repack(xvm(), members);
    refeed();
    expect_refused(pull(feed_file()), kUntrusted, std::string("member '") + name + "' has an unsafe name");
    EXPECT_FALSE(std::filesystem::exists(dir_ / "escaped"));
  }
}

TEST_F(PullTest, AnXvmXmlPointingAtAMissingMemberIsRefused) {
  Members members = members_of(xvm());
  auto description = parse_xvm_xml(member(members, "xvm.xml"), "xvm.xml");
  ASSERT_TRUE(description);
  description->vdis[0].member = "missing.img.gz";
  Members payload(members.begin() + 6, members.end());
  forge_package(xvm(), *description, payload, *publisher_);
  refeed();
  expect_refused(pull(feed_file()), kUntrusted,
                 "xvm.xml: vdi '" + description->vdis[0].name + "' points at member 'missing.img.gz', which the archive "
                 "does not hold");
}

TEST_F(PullTest, AGzipBombIsStoppedAtTheDeclaredSize) {
  // A properly signed archive whose root.img claims 1 MiB but expands to 64.
  std::string bomb;
  {
    testing::ScratchDir work;
    write_text(work / "zeros", std::string(64 << 20, '\0'));
    run_program({"gzip", (work / "zeros").string()});
    bomb = read_text(work / "zeros.gz");
  }
  nlohmann::json manifest = nlohmann::json::parse(read_text(bake() / "manifest.json"));
  manifest["artifacts"] = {{{"file", "root.img"}, {"size", 1 << 20}, {"sha256", std::string(64, '0')}}};
  XvmDescription description;
  description.version = "1.0";
  description.vdis.push_back({"root.img", "root.img.gz", "system", "gzip", 1u << 20, "root.img", "root"});
  forge_package(xvm(), description, {{"manifest.json", manifest.dump()}, {"root.img.gz", bomb}}, *publisher_);
  refeed();
  expect_refused(pull(feed_file()), kUntrusted, "member 'root.img.gz': expands beyond the 1048576 bytes declared");
}

TEST_F(PullTest, AnArtifactWithoutASha256IsRefusedBeforeItIsUnpacked) {
  // Signed, and whole, but its manifest.json gives kiln nothing to check root.img against.
  nlohmann::json manifest = nlohmann::json::parse(read_text(bake() / "manifest.json"));
  manifest["artifacts"] = {{{"file", "root.img"}, {"size", 1 << 20}}};
  std::string packed;
  {
    testing::ScratchDir work;
    write_text(work / "root", std::string(1 << 20, 'r'));
    run_program({"gzip", (work / "root").string()});
    packed = read_text(work / "root.gz");
  }
  XvmDescription description;
  description.version = "1.0";
  description.vdis.push_back({"root.img", "root.img.gz", "system", "gzip", 1u << 20, "root.img", "root"});
  forge_package(xvm(), description, {{"manifest.json", manifest.dump()}, {"root.img.gz", packed}},
                *publisher_);
  refeed();
  expect_refused(pull(feed_file()), kUntrusted, "manifest.json gives no sha256 for 'root.img'");
  EXPECT_FALSE(std::filesystem::exists(out())) << "nothing may be left under the final name";
}

TEST_F(PullTest, AFailedPullLeavesTheImageAlreadyThereAsItWas) {
  ASSERT_EQ(pull(feed_file()).exit_code, 0);
  auto before = testing::list_tree(out().parent_path());
  std::string manifest = read_text(out() / "manifest.json");
  Members members = members_of(xvm());
  member(members, "disk.raw.img.gz")[500] ^= 1;
  repack(xvm(), members);
  refeed();
  auto done = pull(feed_file());
  EXPECT_EQ(done.exit_code, kUntrusted) << done.err;
  EXPECT_EQ(testing::list_tree(out().parent_path()), before);
  EXPECT_EQ(read_text(out() / "manifest.json"), manifest);
  expect_same_file(out() / "disk.raw", bake() / "disk.raw");
}

TEST_F(PullTest, AnImageThatDoesNotMatchItsBakeManifestIsRefused) {
  // Signed, listed and summed, but not the image manifest.json describes.
  Members members = members_of(xvm());
  auto description = parse_xvm_xml(member(members, "xvm.xml"), "xvm.xml");
  ASSERT_TRUE(description);
  Members payload(members.begin() + 6, members.end());
  std::string other = testing::noise(48 << 10, "not the kernel");
  std::string gz;
  {
    testing::ScratchDir work;
    write_text(work / "k", other);
    run_program({"gzip", (work / "k").string()});
    gz = read_text(work / "k.gz");
  }
  member(payload, "vmlinuz.img.gz") = gz;
  forge_package(xvm(), *description, payload, *publisher_);
  refeed();
  expect_refused(pull(feed_file()), kUntrusted, "'vmlinuz' unpacked to 49152 bytes with sha256");
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

TEST(ResolveUri, RelativeEnclosuresResolveAgainstTheFeed) {
  EXPECT_EQ(resolve_uri("https://x.org/feeds/vmcast.rss", "a-1.0.xvm"), "https://x.org/feeds/a-1.0.xvm");
  EXPECT_EQ(resolve_uri("https://x.org/feeds/vmcast.rss", "/images/a.xvm"), "https://x.org/images/a.xvm");
  EXPECT_EQ(resolve_uri("file:///srv/site/vmcast.rss", "a.xvm"), "file:///srv/site/a.xvm");
  EXPECT_EQ(resolve_uri("file:///srv/site/vmcast.rss", "/other/a.xvm"), "file:///other/a.xvm");
  EXPECT_EQ(resolve_uri("https://x.org/vmcast.rss", "ftp://mirror/a.xvm"), "ftp://mirror/a.xvm");
}

}  // namespace
}  // namespace kiln
