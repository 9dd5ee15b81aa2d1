// Fuzzes the vmcast feed reader. Beyond "no crash": an error is a bad-input
// error placed in the file; a feed that reads can be edited (an item added)
// and written, and the result reads again with one item more, the others
// unchanged.
#include <cstdint>
#include <string_view>

#include "feeds/vmcast_feed.h"
#include "tests/fuzz/fuzz_invariant.h"

using kiln::fuzzing::broken;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto feed = kiln::parse_vmcast_feed(text, "fuzz.rss");
  if (!feed) {
    if (feed.error().kind != kiln::ErrorKind::kBadInput || feed.error().where.file != "fuzz.rss")
      broken("feed error without kind or place:", feed.error().to_string());
    return 0;
  }
  auto doc = kiln::VmcastFeedDocument::parse(text, "fuzz.rss");
  if (!doc) broken("a feed that parses is refused as a document:", doc.error().to_string());
  kiln::VmcastItem item;
  item.title = "fuzz 1.0";
  item.guid = "urn:fuzz:unique-guid-for-this-target";
  item.description = "with ]]> inside";
  item.enclosure = kiln::VmcastEnclosure{"https://fuzz.invalid/fuzz-1.0.xvm", 42, "application/octet-stream"};
  item.image_name = "fuzz";
  item.image_version = "1.0";
  item.sha256 = std::string(64, 'a');
  doc->update_channel({"title", "", "", ""}, kiln::rfc822_date(0));
  doc->upsert_item(item);
  std::string written = doc->to_string();
  auto again = kiln::parse_vmcast_feed(written, "written.rss");
  if (!again) broken("an edited feed does not read back:", again.error().to_string() + "\n" + written);
  size_t expected = feed->items.size() + 1;
  for (const auto& old : feed->items)
    if (old.guid == item.guid) --expected;
  if (again->items.size() != expected) broken("the edited feed lost or gained items:", written);
  const kiln::VmcastItem& added = again->items.front();
  if (added.image_name != "fuzz" || added.sha256 != item.sha256 || added.description != item.description ||
      !added.enclosure || added.enclosure->length != 42u)
    broken("the added item does not read back as written:", written);
  return 0;
}
