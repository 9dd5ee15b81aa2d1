#include "feeds/vmcast_feed.h"

#include <algorithm>
#include <charconv>
#include <sstream>

#include <pugixml.hpp>

#include "base/hash.h"

namespace kiln {
namespace {

constexpr unsigned kParseFlags = pugi::parse_default | pugi::parse_declaration | pugi::parse_comments;

int line_of(std::string_view text, ptrdiff_t offset) {
  if (offset < 0) return 0;
  size_t end = std::min(static_cast<size_t>(offset), text.size());
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<ptrdiff_t>(end), '\n'));
}

// All the text and CDATA directly inside an element, joined: a writer may
// split a CDATA section (around "]]>") or mix the two.
std::string text_of(const pugi::xml_node& node) {
  std::string out;
  for (pugi::xml_node child : node.children())
    if (child.type() == pugi::node_pcdata || child.type() == pugi::node_cdata) out += child.value();
  return out;
}

// An ASCII XML name (a prefix kiln can write elements with).
bool is_xml_name(std::string_view name) {
  auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  return !name.empty() && letter(name[0]) && std::all_of(name.begin(), name.end(), [&](char c) {
    return letter(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

// The prefix ("kiln:") bound to kiln's namespace on <rss>, or "" if none is.
std::string kiln_prefix(const pugi::xml_node& rss) {
  for (pugi::xml_attribute attribute : rss.attributes()) {
    std::string_view name = attribute.name();
    if (name.starts_with("xmlns:") && attribute.value() == kKilnFeedNamespace && is_xml_name(name.substr(6)))
      return std::string(name.substr(6)) + ":";
  }
  return "";
}

void set_child_text(pugi::xml_node parent, const char* name, const std::string& value,
                    pugi::xml_node before = {}) {
  pugi::xml_node child = parent.child(name);
  if (!child) child = before ? parent.insert_child_before(name, before) : parent.append_child(name);
  while (child.first_child()) child.remove_child(child.first_child());
  child.append_child(pugi::node_pcdata).set_value(value.c_str());
}

// Whether any element under `root` has a name with this prefix.
bool prefix_in_use(pugi::xml_node root, const std::string& prefix) {
  struct Finder : pugi::xml_tree_walker {
    const std::string& prefix;
    bool found = false;
    explicit Finder(const std::string& p) : prefix(p) {}
    bool for_each(pugi::xml_node& node) override {
      found = node.type() == pugi::node_element && std::string_view(node.name()).starts_with(prefix);
      return !found;
    }
  } finder(prefix);
  root.traverse(finder);
  return finder.found;
}

// The prefix of kiln's namespace on <rss>, bound first if it is not: to the
// first prefix neither declared nor used, since elements that already say
// "kiln:" without a binding are not kiln's.
std::string bind_kiln_prefix(pugi::xml_node rss) {
  if (std::string prefix = kiln_prefix(rss); !prefix.empty()) return prefix;
  std::string candidate = "kiln";
  for (int n = 1; rss.attribute(("xmlns:" + candidate).c_str()) || prefix_in_use(rss, candidate + ":"); ++n)
    candidate = "kiln" + std::to_string(n);
  rss.append_attribute(("xmlns:" + candidate).c_str()) = std::string(kKilnFeedNamespace).c_str();
  return candidate + ":";
}

}  // namespace

Result<VmcastFeed> parse_vmcast_feed(std::string_view text, std::string_view file_name) {
  pugi::xml_document doc;
  pugi::xml_parse_result parsed = doc.load_buffer(text.data(), text.size(), kParseFlags);
  auto where = [&](ptrdiff_t offset) { return Location{std::string(file_name), line_of(text, offset), 0}; };
  if (!parsed) return fail_at(where(parsed.offset), "not well-formed XML: {}", parsed.description());
  pugi::xml_node rss = doc.child("rss");
  if (!rss)
    return fail_at(where(0), "the root element is <{}>, not <rss>: not an RSS feed", doc.document_element().name());
  if (std::string_view(rss.attribute("version").value()) != "2.0")
    return fail_at(where(rss.offset_debug()), "<rss version=\"{}\">: only RSS 2.0 is supported",
                   rss.attribute("version").value());
  pugi::xml_node channel = rss.child("channel");
  if (!channel) return fail_at(where(rss.offset_debug()), "<rss> has no <channel>");
  std::string prefix = kiln_prefix(rss);
  auto kiln = [&](const pugi::xml_node& parent, const char* name) -> std::string {
    if (prefix.empty()) return "";
    return text_of(parent.child((prefix + name).c_str()));
  };

  VmcastFeed feed;
  feed.channel = {text_of(channel.child("title")), text_of(channel.child("link")),
                  text_of(channel.child("description")), text_of(channel.child("language")),
                  text_of(channel.child("pubDate")), text_of(channel.child("lastBuildDate")),
                  kiln(channel, "valid-until")};
  if (!feed.channel.valid_until.empty() && !parse_rfc822_date(feed.channel.valid_until))
    return fail_at(where(channel.offset_debug()), "the channel's valid-until {} is not an RFC 822 date",
                   shown_value(feed.channel.valid_until));
  for (pugi::xml_node node : channel.children("item")) {
    VmcastItem item;
    item.line = line_of(text, node.offset_debug());
    item.title = text_of(node.child("title"));
    item.link = text_of(node.child("link"));
    item.description = text_of(node.child("description"));
    item.pub_date = text_of(node.child("pubDate"));
    item.guid = text_of(node.child("guid"));
    if (pugi::xml_node enclosure = node.child("enclosure")) {
      Location at = where(enclosure.offset_debug());
      VmcastEnclosure out;
      out.url = enclosure.attribute("url").value();
      out.type = enclosure.attribute("type").value();
      if (out.url.empty()) return fail_at(at, "item {}: the enclosure has no url", shown_value(item.title));
      if (pugi::xml_attribute length = enclosure.attribute("length")) {
        std::string_view digits = length.value();
        uint64_t value = 0;
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
        if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size())
          return fail_at(at, "item {}: enclosure length {} is not a number of bytes", shown_value(item.title),
                         shown_value(digits));
        out.length = value;
      }
      item.enclosure = std::move(out);
    }
    item.image_name = kiln(node, "name");
    item.image_version = kiln(node, "version");
    item.sha256 = kiln(node, "sha256");
    if (!item.sha256.empty()) {
      if (!is_sha256_hex(item.sha256))
        return fail_at(where(node.offset_debug()), "item {}: sha256 {} is not 64 hex digits", shown_value(item.title),
                       shown_value(item.sha256));
      std::transform(item.sha256.begin(), item.sha256.end(), item.sha256.begin(),
                     [](unsigned char c) { return std::tolower(c); });
    }
    feed.items.push_back(std::move(item));
  }
  return feed;
}

struct VmcastFeedDocument::State {
  pugi::xml_document doc;
};

VmcastFeedDocument::VmcastFeedDocument(std::unique_ptr<State> state) : state_(std::move(state)) {}
VmcastFeedDocument::VmcastFeedDocument(VmcastFeedDocument&&) noexcept = default;
VmcastFeedDocument::~VmcastFeedDocument() = default;

VmcastFeedDocument VmcastFeedDocument::create(const VmcastChannel& channel) {
  auto state = std::make_unique<State>();
  pugi::xml_node decl = state->doc.append_child(pugi::node_declaration);
  decl.append_attribute("version") = "1.0";
  decl.append_attribute("encoding") = "utf-8";
  pugi::xml_node rss = state->doc.append_child("rss");
  rss.append_attribute("version") = "2.0";
  rss.append_attribute("xmlns:kiln") = std::string(kKilnFeedNamespace).c_str();
  pugi::xml_node node = rss.append_child("channel");
  for (auto [name, value] : {std::pair{"title", &channel.title}, std::pair{"link", &channel.link},
                             std::pair{"description", &channel.description},
                             std::pair{"language", &channel.language}})
    node.append_child(name).append_child(pugi::node_pcdata).set_value(value->c_str());
  return VmcastFeedDocument(std::move(state));
}

Result<VmcastFeedDocument> VmcastFeedDocument::parse(std::string_view text, std::string_view file_name) {
  KILN_TRY(parse_vmcast_feed(text, file_name));
  auto state = std::make_unique<State>();
  state->doc.load_buffer(text.data(), text.size(), kParseFlags);
  return VmcastFeedDocument(std::move(state));
}

void VmcastFeedDocument::update_channel(const VmcastChannel& channel, const std::string& build_date) {
  pugi::xml_node node = state_->doc.child("rss").child("channel");
  pugi::xml_node first_item = node.child("item");
  for (auto [name, value] : {std::pair{"title", &channel.title}, std::pair{"link", &channel.link},
                             std::pair{"description", &channel.description},
                             std::pair{"language", &channel.language}})
    if (!value->empty()) set_child_text(node, name, *value, first_item);
  set_child_text(node, "generator", "kiln " KILN_VERSION, first_item);
  set_child_text(node, "lastBuildDate", build_date, first_item);
}

void VmcastFeedDocument::set_valid_until(const std::string& date) {
  pugi::xml_node rss = state_->doc.child("rss");
  pugi::xml_node channel = rss.child("channel");
  set_child_text(channel, (bind_kiln_prefix(rss) + "valid-until").c_str(), date, channel.child("item"));
}

void VmcastFeedDocument::upsert_item(const VmcastItem& item) {
  pugi::xml_node rss = state_->doc.child("rss");
  pugi::xml_node channel = rss.child("channel");
  std::string prefix = bind_kiln_prefix(rss);
  pugi::xml_node old;
  for (pugi::xml_node node : channel.children("item"))
    if (!item.guid.empty() && text_of(node.child("guid")) == item.guid) {
      old = node;
      break;
    }
  pugi::xml_node anchor = old ? old : channel.child("item");
  pugi::xml_node node = anchor ? channel.insert_child_before("item", anchor) : channel.append_child("item");
  node.append_child("title").append_child(pugi::node_pcdata).set_value(item.title.c_str());
  node.append_child("link").append_child(pugi::node_pcdata).set_value(item.link.c_str());
  node.append_child("description").append_child(pugi::node_cdata).set_value(item.description.c_str());
  node.append_child("pubDate").append_child(pugi::node_pcdata).set_value(item.pub_date.c_str());
  pugi::xml_node guid = node.append_child("guid");
  guid.append_attribute("isPermaLink") = "false";
  guid.append_child(pugi::node_pcdata).set_value(item.guid.c_str());
  if (item.enclosure) {
    pugi::xml_node enclosure = node.append_child("enclosure");
    enclosure.append_attribute("url") = item.enclosure->url.c_str();
    if (item.enclosure->length) enclosure.append_attribute("length") = std::to_string(*item.enclosure->length).c_str();
    enclosure.append_attribute("type") = item.enclosure->type.c_str();
  }
  for (auto [name, value] : {std::pair{"name", &item.image_name}, std::pair{"version", &item.image_version},
                             std::pair{"sha256", &item.sha256}})
    if (!value->empty())
      node.append_child((prefix + name).c_str()).append_child(pugi::node_pcdata).set_value(value->c_str());
  if (old) channel.remove_child(old);
}

std::string VmcastFeedDocument::to_string() const {
  std::ostringstream out;
  state_->doc.save(out, "  ", pugi::format_default, pugi::encoding_utf8);
  return out.str();
}

}  // namespace kiln
