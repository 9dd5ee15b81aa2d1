// `kiln publish`: what lands in the site, that existing tools read it (gpg,
// tar, sha1sum, zcat, xmllint, virt-index-validate), and that a failure
// leaves the site as it was.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/hash.h"
#include "feeds/virt_builder_index.h"
#include "feeds/vmcast_feed.h"
#include "tests/feeds/published_site.h"

namespace kiln {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::read_text;
using testing::run_program;

class PublishTest : public testing::PublishedSiteTest {
 protected:
  // Unpacks the xvm with GNU tar, as a user without kiln would.
  std::filesystem::path untar(const std::string& stem = "fake-1.0") {
    auto dir = dir_ / ("unpacked-" + stem);
    std::filesystem::create_directories(dir);
    auto done = run_program({"tar", "-xf", xvm(stem).string(), "-C", dir.string()});
    EXPECT_EQ(done.exit_code, 0) << done.err;
    return dir;
  }
  std::string xpath(const std::filesystem::path& file, const std::string& expression) {
    auto done = run_program({"xmllint", "--xpath", expression, file.string()});
    EXPECT_EQ(done.exit_code, 0) << expression << ": " << done.err;
    while (!done.out.empty() && done.out.back() == '\n') done.out.pop_back();
    return done.out;
  }
};

TEST_F(PublishTest, WritesTheArchiveTheSignedFeedAndAVirtBuilderRepositoryAndNothingElse) {
  auto done = publish(bake(), "https://images.example.org/", {});
  EXPECT_THAT(done.out, HasSubstr("Published fake 1.0"));
  EXPECT_THAT(testing::list_tree(site()), ElementsAre("fake-1.0.raw.xz", "fake-1.0.xvm", "index", "index.asc",
                                                      "vmcast.rss", "vmcast.rss.asc"));
}

TEST_F(PublishTest, TheXvmHoldsTheVmcastMembersSignedTextsFirst) {
  publish(bake(), "https://images.example.org/");
  auto listed = run_program({"tar", "-tf", xvm().string()});
  EXPECT_EQ(listed.out,
            "xvm.xml\nsignature.asc\nmanifest.txt\nmf-signature.asc\nmanifest.sha256\nmanifest.sha256.asc\n"
            "manifest.json\nfake.xl.cfg\nfake.libvirt.xml\nvmlinuz.img.gz\ninitrd.img.gz\nroot.img.gz\n"
            "disk.raw.img.gz\n");
}

TEST_F(PublishTest, XvmXmlHasTheVmcastShape) {
  publish(bake(), "https://images.example.org/");
  auto xml = untar() / "xvm.xml";
  EXPECT_EQ(run_program({"xmllint", "--noout", xml.string()}).exit_code, 0);
  for (const char* text : {"label", "shortdesc", "longdesc", "detail"})
    EXPECT_NE(xpath(xml, std::string("string(/appliance/name[@xml:lang='en']/") + text + ")"), "") << text;
  EXPECT_EQ(xpath(xml, "string(/appliance/version)"), "1.0");
  EXPECT_EQ(xpath(xml, "string(/appliance/vm/memory/@static_min)"), "512 MiB");
  EXPECT_EQ(xpath(xml, "string(/appliance/vm/vbd/@vdi)"), "disk.raw");
  EXPECT_EQ(xpath(xml, "string(/appliance/vm/vbd/@mode)"), "RW");
  EXPECT_EQ(xpath(xml, "count(/appliance/vdi)"), "4");
  EXPECT_EQ(xpath(xml, "count(/appliance/vdi[@compression='gzip'])"), "4");
  EXPECT_EQ(xpath(xml, "string(/appliance/vdi[@name='disk.raw']/@src)"), "file:///disk.raw.img.gz");
  EXPECT_EQ(xpath(xml, "string(/appliance/vdi[@name='root.img']/@src)"), "file:///root.img.gz");
  EXPECT_EQ(xpath(xml, "string(/appliance/vdi[@name='disk.raw']/@variety)"), "system");
  EXPECT_EQ(xpath(xml, "string(/appliance/vdi[@name='disk.raw']/@size)"),
            std::to_string(std::filesystem::file_size(bake() / "disk.raw")));
}

TEST_F(PublishTest, GpgVerifyAcceptsEverySignatureKilnMakes) {
  publish(bake(), "https://images.example.org/", {});
  auto dir = untar();
  for (auto [signature, data] : {std::pair{"signature.asc", "xvm.xml"}, std::pair{"mf-signature.asc", "manifest.txt"},
                                 std::pair{"manifest.sha256.asc", "manifest.sha256"}}) {
    auto verified = publisher_->gpg_verify({(dir / signature).string(), (dir / data).string()});
    EXPECT_EQ(verified.exit_code, 0) << signature << ": " << verified.err;
  }
  auto feed = publisher_->gpg_verify({(site() / "vmcast.rss.asc").string(), (site() / "vmcast.rss").string()});
  EXPECT_EQ(feed.exit_code, 0) << feed.err;
  auto index = publisher_->gpg_verify({(site() / "index.asc").string()});
  EXPECT_EQ(index.exit_code, 0) << index.err;
  EXPECT_THAT(read_text(site() / "index.asc"), HasSubstr("-----BEGIN PGP SIGNED MESSAGE-----"));
}

TEST_F(PublishTest, TheManifestsCheckWithSha1sumAndSha256sumAndTheImagesWithZcat) {
  publish(bake(), "https://images.example.org/");
  auto dir = untar();
  auto sums = run_program({"sh", "-c", "cd \"$0\" && sha1sum -c --strict manifest.txt && sha256sum -c --strict manifest.sha256",
                           dir.string()});
  EXPECT_EQ(sums.exit_code, 0) << sums.out << sums.err;
  EXPECT_THAT(read_text(dir / "manifest.txt"), HasSubstr("  disk.raw.img.gz\n"));
  for (auto [file, member] : {std::pair{"disk.raw", "disk.raw.img.gz"}, std::pair{"root.img", "root.img.gz"},
                               std::pair{"vmlinuz", "vmlinuz.img.gz"}, std::pair{"initrd.img", "initrd.img.gz"}}) {
    auto same = run_program({"sh", "-c", "gzip -t \"$0\" && zcat \"$0\" | cmp - \"$1\"", (dir / member).string(),
                             (bake() / file).string()});
    EXPECT_EQ(same.exit_code, 0) << member << ": " << same.out << same.err;
  }
}

TEST_F(PublishTest, ThePackagedManifestJsonHasTheDiskSha256TheBakeLeftToPublish) {
  auto original = nlohmann::json::parse(read_text(bake() / "manifest.json"));
  ASSERT_FALSE(original["artifacts"][0].contains("sha256")) << "the fake bake should leave disk.raw unhashed";
  publish(bake(), "https://images.example.org/");
  auto packaged = nlohmann::json::parse(read_text(untar() / "manifest.json"));
  ASSERT_EQ(packaged["artifacts"].size(), original["artifacts"].size());
  for (size_t i = 0; i < packaged["artifacts"].size(); ++i) {
    const auto& artifact = packaged["artifacts"][i];
    std::string file = artifact["file"];
    EXPECT_EQ(artifact["sha256"], *file_digest_hex(bake() / file)) << file;
    EXPECT_EQ(artifact["size"], original["artifacts"][i]["size"]) << file;
  }
  packaged.erase("artifacts");
  original.erase("artifacts");
  EXPECT_EQ(packaged, original);
  EXPECT_FALSE(nlohmann::json::parse(read_text(bake() / "manifest.json"))["artifacts"][0].contains("sha256"))
      << "publish must not change the bake's own manifest";
}

TEST_F(PublishTest, TheFeedItemHasTheRss2ElementsAndTheRealLength) {
  publish(bake(), "https://images.example.org/", {"--no-virt-builder", "--channel-title", "Example images"});
  auto rss = site() / "vmcast.rss";
  EXPECT_EQ(run_program({"xmllint", "--noout", rss.string()}).exit_code, 0);
  EXPECT_EQ(xpath(rss, "string(/rss/@version)"), "2.0");
  EXPECT_EQ(xpath(rss, "string(/rss/channel/title)"), "Example images");
  for (const char* element : {"link", "description", "language"})
    EXPECT_NE(xpath(rss, std::string("string(/rss/channel/") + element + ")"), "") << element;
  for (const char* element : {"title", "link", "description", "pubDate", "guid"})
    EXPECT_NE(xpath(rss, std::string("string(/rss/channel/item/") + element + ")"), "") << element;
  EXPECT_EQ(xpath(rss, "string(/rss/channel/item/enclosure/@url)"), "https://images.example.org/fake-1.0.xvm");
  EXPECT_EQ(xpath(rss, "string(/rss/channel/item/enclosure/@length)"), std::to_string(std::filesystem::file_size(xvm())));
  EXPECT_EQ(xpath(rss, "string(/rss/channel/item/enclosure/@type)"), "application/octet-stream");
  EXPECT_THAT(read_text(rss), HasSubstr("<description><![CDATA["));
}

TEST_F(PublishTest, PublishingAgainKeepsOlderItemsAndReplacesTheSameVersion) {
  publish(bake("bake-1.0"), "https://images.example.org/");
  publish(bake("bake-2.0"), "https://images.example.org/");
  publish(bake("other-1.0"), "https://images.example.org/");
  publish(bake("bake-2.0"), "https://images.example.org/");
  auto feed = parse_vmcast_feed(read_text(site() / "vmcast.rss"), "vmcast.rss");
  ASSERT_TRUE(feed);
  std::vector<std::string> titles;
  for (const auto& item : feed->items) titles.push_back(item.title);
  EXPECT_THAT(titles, ElementsAre("other 1.0", "fake 2.0", "fake 1.0"));
  EXPECT_TRUE(std::filesystem::exists(xvm("fake-1.0")));
  EXPECT_TRUE(std::filesystem::exists(xvm("fake-2.0")));
}

TEST_F(PublishTest, TheVirtBuilderIndexDescribesTheXzImage) {
  publish(bake(), "https://images.example.org/", {});
  auto validated = run_program({"virt-index-validate", (site() / "index.asc").string()});
  EXPECT_EQ(validated.exit_code, 0) << validated.out << validated.err;
  auto index = parse_virt_builder_index(read_text(site() / "index"), "index");
  ASSERT_TRUE(index);
  IndexSection* section = index->find("fake");
  ASSERT_NE(section, nullptr);
  std::string file = *section->get("file");
  EXPECT_EQ(file, "fake-1.0.raw.xz");
  EXPECT_EQ(*section->get("name"), "A fake image for the feed tests");
  EXPECT_EQ(*section->get("osinfo"), "debian12");
  EXPECT_EQ(*section->get("arch"), "x86_64");
  EXPECT_EQ(*section->get("format"), "raw");
  EXPECT_EQ(*section->get("size"), std::to_string(std::filesystem::file_size(bake() / "disk.raw")));
  EXPECT_EQ(*section->get("compressed_size"), std::to_string(std::filesystem::file_size(site() / file)));
  EXPECT_EQ(*section->get("checksum[sha512]"), *file_digest_hex(site() / file, HashAlgorithm::kSha512));
  EXPECT_EQ(*section->get("revision"), "1");
  EXPECT_EQ(*section->get("expand"), "/dev/sda2");
  EXPECT_THAT(*section->get("notes"), HasSubstr("https://images.example.org/fake-1.0.xvm"));
  auto same = run_program({"sh", "-c", "xz -dc \"$0\" | cmp - \"$1\"", (site() / file).string(),
                           (bake() / "disk.raw").string()});
  EXPECT_EQ(same.exit_code, 0) << same.out << same.err;
}

TEST_F(PublishTest, ANewImageInTheIndexGetsANewRevisionAndTheOldFileGoes) {
  publish(bake("bake-1.0"), "https://images.example.org/", {});
  publish(bake("other-1.0"), "https://images.example.org/", {});
  publish(bake("bake-2.0"), "https://images.example.org/", {});
  auto index = parse_virt_builder_index(read_text(site() / "index"), "index");
  ASSERT_TRUE(index);
  ASSERT_EQ(index->sections.size(), 2u);
  EXPECT_EQ(*index->find("fake")->get("file"), "fake-2.0.raw.xz");
  EXPECT_EQ(*index->find("fake")->get("revision"), "2");
  EXPECT_EQ(*index->find("other")->get("revision"), "1");
  EXPECT_FALSE(std::filesystem::exists(site() / "fake-1.0.raw.xz"));
  EXPECT_TRUE(std::filesystem::exists(site() / "other-1.0.raw.xz"));
}

TEST_F(PublishTest, ADamagedFeedInTheSiteStopsThePublishAndIsLeftAlone) {
  testing::write_text(site() / "vmcast.rss", "<rss version=\"2.0\"><channel>\n");
  std::vector<std::string> args = {"publish", bake().string(), "--feed", site().string(), "--base-url",
                                   "https://x/", "--sign-key", publisher_->fingerprint()};
  auto done = testing::run_kiln(args, publisher_->env());
  EXPECT_EQ(done.exit_code, 2) << done.err;
  EXPECT_THAT(done.err, HasSubstr("vmcast.rss"));
  EXPECT_THAT(done.err, HasSubstr("not well-formed XML"));
  EXPECT_THAT(testing::list_tree(site()), ElementsAre("vmcast.rss"));
  EXPECT_EQ(read_text(site() / "vmcast.rss"), "<rss version=\"2.0\"><channel>\n");
}

TEST_F(PublishTest, ABakeThatChangedSinceItsManifestIsRefused) {
  std::filesystem::copy(bake(), dir_ / "bake", std::filesystem::copy_options::recursive);
  std::filesystem::resize_file(dir_ / "bake" / "root.img", 1000);
  auto done = testing::run_kiln({"publish", (dir_ / "bake").string(), "--feed", site().string(), "--base-url",
                                 "https://x/", "--sign-key", publisher_->fingerprint()},
                                publisher_->env());
  EXPECT_EQ(done.exit_code, 2) << done.err;
  EXPECT_THAT(done.err, HasSubstr("root.img: 1000 bytes, but manifest.json says"));
  EXPECT_FALSE(std::filesystem::exists(site() / "vmcast.rss"));
}

TEST_F(PublishTest, AnUnknownSigningKeyIsRefusedAndLeavesNoFiles) {
  auto done = testing::run_kiln({"publish", bake().string(), "--feed", site().string(), "--base-url", "https://x/",
                                 "--sign-key", "nobody@nowhere.invalid"},
                                publisher_->env());
  EXPECT_EQ(done.exit_code, 2) << done.err;
  EXPECT_THAT(done.err, HasSubstr("signing key 'nobody@nowhere.invalid'"));
  EXPECT_THAT(testing::list_tree(site()), ::testing::IsEmpty());
}

}  // namespace
}  // namespace kiln
