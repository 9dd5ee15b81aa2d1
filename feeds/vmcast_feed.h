// The vmcast feed: an RSS 2.0 document whose items each carry an
// <enclosure url length type> pointing at an xvm archive.
//
// kiln writes the real byte length (the 2007 sample's length="1" is a known
// wart) and adds, in its own XML namespace, the image's name and version and
// the archive's sha256, so that a signed feed pins the exact archive, and in
// the channel a valid-until date, so that a signed feed cannot be served
// again for ever (a freeze attack). Readers that do not know the namespace
// skip those elements.
//
// VmcastFeedDocument edits a feed file in place: it replaces or adds one
// item and leaves everything else as written, older items included.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "feeds/rfc822_date.h"

namespace kiln {

// kiln's namespace for its extension elements in a feed.
inline constexpr std::string_view kKilnFeedNamespace = "urn:kiln:vmcast:1";

struct VmcastChannel {
  std::string title;
  std::string link;
  std::string description;
  std::string language;
  // Read from a feed, as written (RFC 822); update_channel ignores them.
  std::string pub_date;
  std::string last_build_date;
  std::string valid_until;  // kiln's element; empty in feeds made by others
};

struct VmcastEnclosure {
  std::string url;
  std::optional<uint64_t> length;
  std::string type;
};

struct VmcastItem {
  std::string title;
  std::string link;
  std::string description;
  std::string pub_date;  // RFC 822, as written
  std::string guid;
  std::optional<VmcastEnclosure> enclosure;
  // kiln's elements; empty in feeds made by others.
  std::string image_name;
  std::string image_version;
  std::string sha256;  // of the enclosure's bytes
  int line = 0;        // where the item starts in the feed file

  // The image name: kiln's element, else the title.
  std::string name() const { return image_name.empty() ? title : image_name; }
};

struct VmcastFeed {
  VmcastChannel channel;
  std::vector<VmcastItem> items;  // in feed order
};

// Reads a feed. Errors carry FILE:LINE: malformed XML, a root other than
// <rss version="2.0">, no <channel>, an enclosure without url or with a
// length that is not a number, a sha256 that is not 64 hex digits, a
// valid-until that is not an RFC 822 date.
Result<VmcastFeed> parse_vmcast_feed(std::string_view text, std::string_view file_name);

class VmcastFeedDocument {
 public:
  // A new feed with this channel.
  static VmcastFeedDocument create(const VmcastChannel& channel);
  // An existing feed file's text; it must parse as a vmcast feed.
  static Result<VmcastFeedDocument> parse(std::string_view text, std::string_view file_name);
  VmcastFeedDocument(VmcastFeedDocument&&) noexcept;
  ~VmcastFeedDocument();

  // Sets the channel's non-empty fields (and lastBuildDate, generator).
  void update_channel(const VmcastChannel& channel, const std::string& build_date);
  // Sets the channel's kiln:valid-until (an RFC 822 date).
  void set_valid_until(const std::string& date);
  // Replaces the item with the same guid where it stands, or puts the new
  // item first (newest first, as feeds are read).
  void upsert_item(const VmcastItem& item);
  std::string to_string() const;

 private:
  struct State;
  explicit VmcastFeedDocument(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace kiln
