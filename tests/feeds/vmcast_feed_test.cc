// The vmcast feed: the published sample reads; kiln's updates keep what was
// there; and the result is well-formed RSS 2.0 for xmllint.
#include "feeds/vmcast_feed.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

constexpr const char* kSample = R"(<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0">
  <channel>
    <title>Example VMCASTING Test Feed</title>
    <link>http://host/files/test.rss</link>
    <description>Example VMcasting Test Feed</description>
    <language>en-us</language>
    <item>
      <title>Debian 3.1 Base Image</title>
      <link>http://www.vmcasting.org/</link>
      <enclosure url="http://host/vmimages/debian_3.1.xvm" length="1" type="application/octet-stream"/>
      <description><![CDATA[Debian 3.1 Base Image with minimal components]]></description>
      <pubDate>Fri, 16 Feb 2007 14:43:18 -0800</pubDate>
    </item>
  </channel>
</rss>
)";

VmcastItem item(const std::string& version, const std::string& description = "An image") {
  VmcastItem out;
  out.title = "web " + version;
  out.link = "https://images.example.org/";
  out.description = description;
  out.pub_date = rfc822_date(1700000000);
  out.guid = "https://images.example.org/web-" + version + ".xvm";
  out.enclosure = VmcastEnclosure{out.guid, 1234, "application/octet-stream"};
  out.image_name = "web";
  out.image_version = version;
  out.sha256 = std::string(64, 'c');
  return out;
}

VmcastChannel channel() {
  return {"Example images", "https://images.example.org/", "Images for the examples", "en"};
}

TEST(VmcastFeed, ReadsThePublishedSample) {
  auto feed = parse_vmcast_feed(kSample, "test.rss");
  ASSERT_TRUE(feed) << feed.error().to_string();
  EXPECT_EQ(feed->channel.title, "Example VMCASTING Test Feed");
  EXPECT_EQ(feed->channel.language, "en-us");
  ASSERT_EQ(feed->items.size(), 1u);
  const VmcastItem& item = feed->items[0];
  EXPECT_EQ(item.title, "Debian 3.1 Base Image");
  EXPECT_EQ(item.name(), "Debian 3.1 Base Image");
  EXPECT_EQ(item.description, "Debian 3.1 Base Image with minimal components");
  ASSERT_TRUE(item.enclosure);
  EXPECT_EQ(item.enclosure->url, "http://host/vmimages/debian_3.1.xvm");
  EXPECT_EQ(item.enclosure->length, 1u);
  EXPECT_EQ(item.line, 8);
  EXPECT_TRUE(item.sha256.empty());
}

TEST(VmcastFeed, AWrittenItemReadsBackWithKilnsElements) {
  auto doc = VmcastFeedDocument::create(channel());
  doc.upsert_item(item("1.0", "text with ]]> inside & <tags>"));
  auto feed = parse_vmcast_feed(doc.to_string(), "vmcast.rss");
  ASSERT_TRUE(feed) << feed.error().to_string();
  ASSERT_EQ(feed->items.size(), 1u);
  EXPECT_EQ(feed->items[0].description, "text with ]]> inside & <tags>");
  EXPECT_EQ(feed->items[0].image_name, "web");
  EXPECT_EQ(feed->items[0].image_version, "1.0");
  EXPECT_EQ(feed->items[0].enclosure->length, 1234u);
  EXPECT_EQ(feed->items[0].sha256, std::string(64, 'c'));
  EXPECT_EQ(feed->items[0].guid, "https://images.example.org/web-1.0.xvm");
}

TEST(VmcastFeed, UpdatesKeepOlderItemsAndReplaceTheSameGuidInPlace) {
  auto doc = VmcastFeedDocument::create(channel());
  doc.upsert_item(item("1.0"));
  doc.upsert_item(item("2.0"));
  doc.upsert_item(item("3.0"));
  doc.upsert_item(item("2.0", "rebuilt"));
  auto feed = parse_vmcast_feed(doc.to_string(), "vmcast.rss");
  ASSERT_TRUE(feed);
  ASSERT_EQ(feed->items.size(), 3u);
  EXPECT_EQ(feed->items[0].image_version, "3.0");
  EXPECT_EQ(feed->items[1].image_version, "2.0");
  EXPECT_EQ(feed->items[1].description, "rebuilt");
  EXPECT_EQ(feed->items[2].image_version, "1.0");
}

TEST(VmcastFeed, AnExistingFeedKeepsWhatKilnDoesNotModel) {
  std::string text = std::string(kSample);
  text.replace(text.find("<language>"), 0, "<image><url>http://host/logo.png</url></image>\n    <!-- hand-made -->\n    ");
  auto doc = VmcastFeedDocument::parse(text, "test.rss");
  ASSERT_TRUE(doc) << doc.error().to_string();
  doc->update_channel({"", "", "", ""}, rfc822_date(1700000000));
  doc->upsert_item(item("1.0"));
  std::string out = doc->to_string();
  EXPECT_THAT(out, HasSubstr("<url>http://host/logo.png</url>"));
  EXPECT_THAT(out, HasSubstr("<!-- hand-made -->"));
  EXPECT_THAT(out, HasSubstr("<title>Example VMCASTING Test Feed</title>"));
  EXPECT_THAT(out, HasSubstr("xmlns:kiln=\"urn:kiln:vmcast:1\""));
  auto feed = parse_vmcast_feed(out, "vmcast.rss");
  ASSERT_TRUE(feed);
  ASSERT_EQ(feed->items.size(), 2u);
  EXPECT_EQ(feed->items[0].image_version, "1.0");
  EXPECT_EQ(feed->items[1].title, "Debian 3.1 Base Image");
}

TEST(VmcastFeed, KilnsElementsAreFoundUnderAnyPrefix) {
  std::string text = R"(<rss version="2.0" xmlns:k="urn:kiln:vmcast:1"><channel><title>t</title>
    <item><title>x</title><enclosure url="x.xvm"/><k:name>web</k:name><k:version>4</k:version></item>
    <item><title>y</title><kiln:name>ignored</kiln:name></item></channel></rss>)";
  auto feed = parse_vmcast_feed(text, "f");
  ASSERT_TRUE(feed) << feed.error().to_string();
  EXPECT_EQ(feed->items[0].name(), "web");
  EXPECT_EQ(feed->items[0].image_version, "4");
  EXPECT_EQ(feed->items[1].name(), "y") << "an unbound prefix is not kiln's";
}

TEST(VmcastFeed, AddingAnItemNeverAdoptsElementsThatMerelyLookLikeKilns) {
  // "kiln:" used without binding kiln's namespace (or bound under a name no
  // element can have) is someone else's: kiln binds a prefix of its own.
  for (std::string rss : {std::string("<rss version=\"2.0\">"),
                          std::string("<rss version=\"2.0\" xmlns:-x=\"urn:kiln:vmcast:1\">")}) {
    auto doc = VmcastFeedDocument::parse(rss + "<channel><item><kiln:sha256>not hex</kiln:sha256></item></channel></rss>",
                                         "f.rss");
    ASSERT_TRUE(doc) << doc.error().to_string();
    doc->upsert_item(item("1.0"));
    auto feed = parse_vmcast_feed(doc->to_string(), "f.rss");
    ASSERT_TRUE(feed) << feed.error().to_string() << "\n" << doc->to_string();
    ASSERT_EQ(feed->items.size(), 2u);
    EXPECT_EQ(feed->items[0].sha256, std::string(64, 'c'));
    EXPECT_EQ(feed->items[1].sha256, "");
  }
}

TEST(VmcastFeed, XmllintFindsTheFeedWellFormedWithTheRss2Elements) {
  testing::ScratchDir dir;
  auto doc = VmcastFeedDocument::create(channel());
  doc.update_channel({}, rfc822_date(1700000000));
  doc.upsert_item(item("1.0"));
  testing::write_text(dir / "vmcast.rss", doc.to_string());
  std::string file = (dir / "vmcast.rss").string();
  auto lint = testing::run_program({"xmllint", "--noout", file});
  EXPECT_EQ(lint.exit_code, 0) << lint.err;
  auto xpath = [&](const std::string& expression) {
    auto done = testing::run_program({"xmllint", "--xpath", expression, file});
    EXPECT_EQ(done.exit_code, 0) << expression << ": " << done.err;
    while (!done.out.empty() && done.out.back() == '\n') done.out.pop_back();
    return done.out;
  };
  EXPECT_EQ(xpath("string(/rss/@version)"), "2.0");
  for (const char* element : {"title", "link", "description", "language"})
    EXPECT_EQ(xpath(std::string("count(/rss/channel/") + element + ")"), "1") << element;
  for (const char* element : {"title", "link", "description", "pubDate", "guid", "enclosure"})
    EXPECT_EQ(xpath(std::string("count(/rss/channel/item/") + element + ")"), "1") << element;
  EXPECT_EQ(xpath("string(/rss/channel/item/enclosure/@length)"), "1234");
  EXPECT_EQ(xpath("string(/rss/channel/item/enclosure/@type)"), "application/octet-stream");
  EXPECT_EQ(xpath("string(/rss/channel/item/pubDate)"), "Tue, 14 Nov 2023 22:13:20 +0000");
  EXPECT_THAT(testing::read_text(dir / "vmcast.rss"), HasSubstr("<description><![CDATA[An image]]></description>"));
}

TEST(VmcastFeed, ErrorsNameTheLine) {
  auto malformed = parse_vmcast_feed("<rss version=\"2.0\">\n<channel>\n</rss>\n", "f.rss");
  ASSERT_FALSE(malformed);
  EXPECT_THAT(malformed.error().to_string(), HasSubstr("f.rss:3: not well-formed XML"));
  auto atom = parse_vmcast_feed("<feed xmlns=\"http://www.w3.org/2005/Atom\"/>", "f.rss");
  ASSERT_FALSE(atom);
  EXPECT_THAT(atom.error().message, HasSubstr("not an RSS feed"));
  auto old = parse_vmcast_feed("<rss version=\"0.91\"><channel/></rss>", "f.rss");
  ASSERT_FALSE(old);
  EXPECT_THAT(old.error().message, HasSubstr("only RSS 2.0"));
  auto length = parse_vmcast_feed("<rss version=\"2.0\"><channel>\n<item><title>t</title>\n"
                                  "<enclosure url=\"u\" length=\"big\"/></item></channel></rss>",
                                  "f.rss");
  ASSERT_FALSE(length);
  EXPECT_THAT(length.error().to_string(), HasSubstr("f.rss:3: item \"t\": enclosure length \"big\" is not a number"));
  auto no_url = parse_vmcast_feed("<rss version=\"2.0\"><channel><item><enclosure length=\"1\"/></item></channel></rss>",
                                  "f.rss");
  ASSERT_FALSE(no_url);
  EXPECT_THAT(no_url.error().message, HasSubstr("no url"));
}

TEST(VmcastFeed, Rfc822DatesAreUtcWithEnglishNames) {
  EXPECT_EQ(rfc822_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(rfc822_date(1171665798), "Fri, 16 Feb 2007 22:43:18 +0000");
}

TEST(VmcastFeed, Rfc822DatesReadAsRssWritersWriteThem) {
  EXPECT_EQ(parse_rfc822_date("Fri, 16 Feb 2007 22:43:18 +0000"), 1171665798);
  EXPECT_EQ(parse_rfc822_date("Fri, 16 Feb 2007 14:43:18 -0800"), 1171665798) << "the sample's zone";
  EXPECT_EQ(parse_rfc822_date("16 Feb 2007 22:43:18 GMT"), 1171665798);
  EXPECT_EQ(parse_rfc822_date("Fri, 16 Feb 2007 22:43 UT"), 1171665780);
  EXPECT_EQ(parse_rfc822_date(rfc822_date(1700086400)), 1700086400);
  for (const char* bad : {"", "yesterday", "Fri, 16 Feb 2007", "Fri, 16 Feb 2007 22:43:18 +0000 and more",
                          "Fri, 16 Feb 2007 22:43:18 +0000                                  "})
    EXPECT_FALSE(parse_rfc822_date(bad)) << bad;
}

TEST(VmcastFeed, TheChannelsValidUntilIsWrittenInKilnsNamespaceAndReadBack) {
  auto doc = VmcastFeedDocument::parse(kSample, "test.rss");
  ASSERT_TRUE(doc);
  doc->update_channel({}, rfc822_date(1700000000));
  doc->set_valid_until(rfc822_date(1702592000));
  doc->set_valid_until(rfc822_date(1702592000));  // replaced, not added twice
  std::string text = doc->to_string();
  EXPECT_THAT(text, HasSubstr("xmlns:kiln=\"urn:kiln:vmcast:1\""));
  EXPECT_EQ(text.find("<kiln:valid-until>"), text.rfind("<kiln:valid-until>"));
  EXPECT_LT(text.find("<kiln:valid-until>"), text.find("<item>")) << "in the channel, before the items";
  auto feed = parse_vmcast_feed(text, "test.rss");
  ASSERT_TRUE(feed) << feed.error().to_string();
  EXPECT_EQ(feed->channel.valid_until, "Thu, 14 Dec 2023 22:13:20 +0000");
  EXPECT_EQ(feed->channel.last_build_date, "Tue, 14 Nov 2023 22:13:20 +0000");
}

TEST(VmcastFeed, AValidUntilThatIsNoDateIsAnErrorAtItsLine) {
  auto feed = parse_vmcast_feed("<rss version=\"2.0\" xmlns:k=\"urn:kiln:vmcast:1\">\n<channel>\n"
                                "<k:valid-until>\x1b[2Jsoon</k:valid-until></channel></rss>",
                                "f.rss");
  ASSERT_FALSE(feed);
  EXPECT_EQ(feed.error().kind, ErrorKind::kBadInput);
  EXPECT_THAT(feed.error().to_string(),
              HasSubstr("f.rss:2: the channel's valid-until \"\\x1b[2Jsoon\" is not an RFC 822 date"));
}

}  // namespace
}  // namespace kiln
