#include "formats/disk/lvm_metadata.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <memory>

#include "base/files.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kSector = 512;
constexpr std::string_view kLabelId = "LABELONE";
constexpr std::string_view kLabelType = "LVM2 001";
constexpr std::string_view kAreaMagic = " LVM2 x[5A%r0N*>";
constexpr uint64_t kAreaHeaderSize = 512;
// Metadata is a few KiB; lvm2's own areas are 1 MiB by default.
constexpr uint64_t kMaxMetadata = 16 << 20;

uint32_t le32(std::string_view bytes, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(bytes[at + i]);
  return v;
}

uint64_t le64(std::string_view bytes, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(bytes[at + i]);
  return v;
}

// ---- the text format: sections, assignments, strings, numbers, arrays ----

struct Value {
  bool is_string = false;
  bool is_array = false;
  std::string text;
  std::vector<Value> items;
};

struct Section {
  Location where;
  std::map<std::string, Value> values;
  std::vector<std::pair<std::string, std::unique_ptr<Section>>> sections;

  const Section* section(std::string_view name) const {
    for (const auto& [n, s] : sections)
      if (n == name) return s.get();
    return nullptr;
  }
};

class MetadataParser {
 public:
  MetadataParser(std::string_view text, const std::string& source) : text_(text), source_(source) {}

  Result<Section> parse() {
    Section top;
    top.where = here();
    KILN_TRY(parse_items(top, false));
    return top;
  }

 private:
  Location here() const { return {source_, line_, column_}; }

  void advance() {
    if (text_[at_] == '\n') {
      ++line_;
      column_ = 1;
    } else {
      ++column_;
    }
    ++at_;
  }

  void skip_space() {
    while (at_ < text_.size()) {
      char c = text_[at_];
      if (c == '#') {
        while (at_ < text_.size() && text_[at_] != '\n') advance();
      } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\0') {
        advance();
      } else {
        break;
      }
    }
  }

  static bool name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '+' || c == '-';
  }

  Result<std::string> name() {
    size_t start = at_;
    while (at_ < text_.size() && name_char(text_[at_])) advance();
    if (at_ == start)
      return fail_at(here(), "expected a name, found {}",
                     at_ < text_.size() ? shown_value(text_.substr(at_, 1)) : "the end");
    return std::string(text_.substr(start, at_ - start));
  }

  Result<Value> value() {
    skip_space();
    if (at_ >= text_.size()) return fail_at(here(), "expected a value, found the end");
    Value v;
    if (text_[at_] == '[') {
      advance();
      v.is_array = true;
      for (skip_space(); at_ < text_.size() && text_[at_] != ']'; skip_space()) {
        KILN_ASSIGN(Value item, value());
        if (item.is_array) return fail_at(here(), "an array inside an array");
        v.items.push_back(std::move(item));
        skip_space();
        if (at_ < text_.size() && text_[at_] == ',') advance();
      }
      if (at_ >= text_.size()) return fail_at(here(), "an array not closed with ']'");
      advance();
      return v;
    }
    if (text_[at_] == '"') {
      Location opened = here();
      advance();
      v.is_string = true;
      while (at_ < text_.size() && text_[at_] != '"') {
        if (text_[at_] == '\\' && at_ + 1 < text_.size()) advance();
        v.text += text_[at_];
        advance();
      }
      if (at_ >= text_.size()) return fail_at(opened, "a string not closed with '\"'");
      advance();
      return v;
    }
    KILN_ASSIGN(v.text, name());
    return v;
  }

  Result<> parse_items(Section& into, bool nested) {
    for (skip_space(); at_ < text_.size(); skip_space()) {
      if (text_[at_] == '}') {
        if (!nested) return fail_at(here(), "a '}}' closing no section");
        advance();
        return {};
      }
      Location where = here();
      KILN_ASSIGN(std::string key, name());
      skip_space();
      if (at_ < text_.size() && text_[at_] == '{') {
        advance();
        auto section = std::make_unique<Section>();
        section->where = where;
        KILN_TRY(parse_items(*section, true));
        into.sections.emplace_back(std::move(key), std::move(section));
        continue;
      }
      if (at_ >= text_.size() || text_[at_] != '=')
        return fail_at(here(), "expected '=' or '{{' after {}", key);
      advance();
      KILN_ASSIGN(into.values[key], value());
    }
    if (nested) return fail_at(into.where, "a section not closed with '}}'");
    return {};
  }

  std::string_view text_;
  const std::string& source_;
  size_t at_ = 0;
  int line_ = 1;
  int column_ = 1;
};

Result<std::string> string_of(const Section& s, const std::string& key) {
  auto found = s.values.find(key);
  if (found == s.values.end() || !found->second.is_string)
    return fail_at(s.where, "no {} = \"...\" in this section", key);
  return found->second.text;
}

Result<uint64_t> number_of(const Section& s, const std::string& key) {
  auto found = s.values.find(key);
  if (found == s.values.end() || found->second.is_string || found->second.is_array)
    return fail_at(s.where, "no {} = NUMBER in this section", key);
  const std::string& text = found->second.text;
  if (text.empty() || text.size() > 19 || !std::ranges::all_of(text, [](char c) { return c >= '0' && c <= '9'; }))
    return fail_at(s.where, "{} = {} is not a number kiln reads", key, shown_value(text));
  return std::stoull(text);
}

bool has_flag(const Section& s, const std::string& key, std::string_view flag) {
  auto found = s.values.find(key);
  if (found == s.values.end()) return false;
  return std::ranges::any_of(found->second.items, [&](const Value& v) { return v.text == flag; });
}

Result<LvmSegment> segment_of(const Section& s) {
  LvmSegment segment;
  KILN_ASSIGN(segment.start_extent, number_of(s, "start_extent"));
  KILN_ASSIGN(segment.extent_count, number_of(s, "extent_count"));
  KILN_ASSIGN(segment.type, string_of(s, "type"));
  auto stripes = s.values.find("stripes");
  if (stripes == s.values.end()) return segment;
  const std::vector<Value>& items = stripes->second.items;
  if (items.size() % 2 != 0) return fail_at(s.where, "stripes = [...] is not pairs of a volume and an extent");
  for (size_t i = 0; i < items.size(); i += 2) {
    const Value& extent = items[i + 1];
    if (!items[i].is_string || extent.is_string || extent.text.empty() || extent.text.size() > 19 ||
        !std::ranges::all_of(extent.text, [](char c) { return c >= '0' && c <= '9'; }))
      return fail_at(s.where, "stripes = [...] is not pairs of a volume and an extent");
    segment.stripes.emplace_back(items[i].text, std::stoull(extent.text));
  }
  return segment;
}

std::string without_dashes(std::string_view uuid) {
  std::string out;
  for (char c : uuid)
    if (c != '-') out += c;
  return out;
}

struct Area {
  uint64_t offset = 0;
  uint64_t size = 0;
};

// The first metadata area the label lists.
Result<Area> metadata_area(std::string_view label_sectors, const std::string& description, std::string& pv_uuid) {
  for (uint64_t sector = 0; sector < 4; ++sector) {
    std::string_view label = label_sectors.substr(sector * kSector, kSector);
    if (label.substr(0, 8) != kLabelId) continue;
    if (label.substr(24, 8) != kLabelType)
      return fail(ErrorKind::kBadInput, "{}: an LVM label of type {}, not LVM2's", description,
                  shown_value(label.substr(24, 8)));
    uint32_t header = le32(label, 20);
    if (header < 32 || header + 32 + 8 > kSector)
      return fail(ErrorKind::kBadInput, "{}: its LVM label points outside its sector", description);
    pv_uuid = std::string(label.substr(header, 32));
    size_t at = header + 40;
    // Data areas, a zero entry, then metadata areas, a zero entry.
    for (int list = 0; list < 2; ++list) {
      for (; at + 16 <= kSector; at += 16) {
        uint64_t offset = le64(label, at);
        if (offset == 0) break;
        if (list == 1) return Area{offset, le64(label, at + 8)};
      }
      at += 16;
    }
    return fail(ErrorKind::kBadInput, "{}: an LVM physical volume with no metadata area (its volume group's "
                                      "metadata is on another volume, which kiln does not have)",
                description);
  }
  return fail(ErrorKind::kBadInput, "{}: no LVM2 label in its first four sectors", description);
}

}  // namespace

const LvmPhysicalVolume* LvmVolumeGroup::find_physical_volume(std::string_view pv) const {
  for (const LvmPhysicalVolume& p : physical_volumes)
    if (p.name == pv) return &p;
  return nullptr;
}

uint32_t lvm_checksum(std::string_view data, uint32_t crc) {
  for (char c : data) {
    crc ^= static_cast<uint8_t>(c);
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) ? 0xEDB88320u : 0);
  }
  return crc;
}

Result<bool> has_lvm_label(const fs::path& image, uint64_t offset) {
  KILN_ASSIGN(std::string sectors, read_file_range(image, offset, 4 * kSector));
  for (size_t at = 0; at + kSector <= sectors.size(); at += kSector)
    if (std::string_view(sectors).substr(at, 8) == kLabelId) return true;
  return false;
}

Result<LvmVolumeGroup> parse_lvm_metadata(std::string_view text, const std::string& source) {
  MetadataParser parser(text, source);
  KILN_ASSIGN(Section top, parser.parse());
  if (top.sections.size() != 1)
    return fail_at(top.where, "{} volume groups in the metadata, not one", top.sections.size());
  const auto& [name, vg] = top.sections.front();
  LvmVolumeGroup group;
  group.name = name;
  KILN_ASSIGN(group.uuid, string_of(*vg, "id"));
  KILN_ASSIGN(group.seqno, number_of(*vg, "seqno"));
  KILN_ASSIGN(uint64_t extent_sectors, number_of(*vg, "extent_size"));
  if (extent_sectors == 0 || extent_sectors > (uint64_t{1} << 32))
    return fail_at(vg->where, "extent_size = {} sectors is not an extent size", extent_sectors);
  group.extent_size = extent_sectors * kSector;
  if (const Section* pvs = vg->section("physical_volumes")) {
    for (const auto& [pv_name, pv] : pvs->sections) {
      LvmPhysicalVolume volume{pv_name};
      KILN_ASSIGN(volume.uuid, string_of(*pv, "id"));
      KILN_ASSIGN(uint64_t pe_start, number_of(*pv, "pe_start"));
      KILN_ASSIGN(volume.pe_count, number_of(*pv, "pe_count"));
      // Every byte offset computed from these must fit in 64 bits.
      constexpr uint64_t kMax = uint64_t{1} << 62;
      if (pe_start > kMax / kSector || volume.pe_count > (kMax - pe_start * kSector) / group.extent_size)
        return fail_at(pv->where, "pe_start = {} and pe_count = {} describe a volume larger than any disk", pe_start,
                       volume.pe_count);
      volume.pe_start = pe_start * kSector;
      group.physical_volumes.push_back(std::move(volume));
    }
  }
  if (const Section* lvs = vg->section("logical_volumes")) {
    for (const auto& [lv_name, lv] : lvs->sections) {
      LvmLogicalVolume volume{lv_name};
      KILN_ASSIGN(volume.uuid, string_of(*lv, "id"));
      volume.visible = has_flag(*lv, "status", "VISIBLE");
      for (const auto& [segment_name, segment] : lv->sections) {
        if (!segment_name.starts_with("segment")) continue;
        KILN_ASSIGN(LvmSegment s, segment_of(*segment));
        volume.segments.push_back(std::move(s));
      }
      std::ranges::sort(volume.segments, {}, &LvmSegment::start_extent);
      group.logical_volumes.push_back(std::move(volume));
    }
  }
  return group;
}

Result<LvmVolumeGroup> read_lvm_physical_volume(const fs::path& image, uint64_t offset, uint64_t size,
                                                const std::string& description) {
  KILN_ASSIGN(std::string label, read_file_range(image, offset, 4 * kSector));
  if (label.size() < 4 * kSector) return fail(ErrorKind::kBadInput, "{}: too short for an LVM label", description);
  std::string pv_uuid;
  KILN_ASSIGN(Area area, metadata_area(label, description, pv_uuid));
  if (area.size < 2 * kAreaHeaderSize || area.offset > size || area.size > size - area.offset)
    return fail(ErrorKind::kBadInput, "{}: its LVM metadata area lies outside it", description);
  KILN_ASSIGN(std::string header, read_file_range(image, offset + area.offset, kAreaHeaderSize));
  if (header.size() < kAreaHeaderSize || std::string_view(header).substr(4, 16) != kAreaMagic)
    return fail(ErrorKind::kBadInput, "{}: its LVM metadata area has no header", description);
  if (lvm_checksum(std::string_view(header).substr(4)) != le32(header, 0))
    return fail(ErrorKind::kBadInput, "{}: its LVM metadata area header fails its checksum", description);
  uint64_t text_offset = le64(header, 40);
  uint64_t text_size = le64(header, 48);
  uint32_t text_checksum = le32(header, 56);
  if (text_offset == 0 || text_size == 0)
    return fail(ErrorKind::kBadInput, "{}: its LVM metadata area holds no metadata", description);
  if (text_size > kMaxMetadata || text_offset < kAreaHeaderSize || text_offset >= area.size ||
      text_size > area.size - kAreaHeaderSize)
    return fail(ErrorKind::kBadInput, "{}: its LVM metadata lies outside its area", description);
  // The area is a ring after its header: the text may wrap to its start.
  uint64_t first = std::min(text_size, area.size - text_offset);
  KILN_ASSIGN(std::string text, read_file_range(image, offset + area.offset + text_offset, first));
  if (first < text_size) {
    KILN_ASSIGN(std::string rest, read_file_range(image, offset + area.offset + kAreaHeaderSize, text_size - first));
    text += rest;
  }
  if (text.size() != text_size) return fail(ErrorKind::kBadInput, "{}: its LVM metadata is cut short", description);
  if (lvm_checksum(text) != text_checksum)
    return fail(ErrorKind::kBadInput, "{}: its LVM metadata fails its checksum", description);
  KILN_ASSIGN(LvmVolumeGroup group, parse_lvm_metadata(text, description + " (LVM metadata)"));
  for (const LvmPhysicalVolume& pv : group.physical_volumes)
    if (without_dashes(pv.uuid) == pv_uuid) group.this_volume = pv.name;
  if (group.this_volume.empty())
    return fail(ErrorKind::kBadInput, "{}: its LVM label's volume {} is not in its volume group {}'s metadata",
                description, shown_value(pv_uuid), group.name);
  return group;
}

Result<ByteRange> lvm_volume_range(const LvmVolumeGroup& group, const LvmLogicalVolume& volume) {
  const std::string name = group.name + "/" + volume.name;
  const LvmPhysicalVolume* pv = group.find_physical_volume(group.this_volume);
  if (!pv) return fail(ErrorKind::kBadInput, "{}: no physical volume was read", name);
  if (volume.segments.empty()) return fail(ErrorKind::kBadInput, "{}: a logical volume with no segments", name);
  ByteRange range;
  uint64_t next_extent = 0;
  for (const LvmSegment& s : volume.segments) {
    bool linear = (s.type == "striped" || s.type == "linear") && s.stripes.size() == 1;
    if (!linear)
      return fail(ErrorKind::kBadInput, "{}: a {} segment; kiln reads linear logical volumes only", name,
                  shown_value(s.type));
    const auto& [on, first] = s.stripes.front();
    if (on != pv->name)
      return fail(ErrorKind::kBadInput, "{}: has extents on {}, another physical volume than the one read", name, on);
    if (s.start_extent != next_extent || (next_extent > 0 && first != range.offset + next_extent))
      return fail(ErrorKind::kBadInput, "{}: its extents are not one contiguous range; kiln reads a logical volume "
                                        "in place only when they are",
                  name);
    if (first > pv->pe_count || s.extent_count > pv->pe_count - first)
      return fail(ErrorKind::kBadInput, "{}: its extents run past its physical volume's {}", name, pv->pe_count);
    if (next_extent == 0) range.offset = first;
    next_extent += s.extent_count;  // contiguous and within pe_count: no overflow
  }
  return ByteRange{pv->pe_start + range.offset * group.extent_size, next_extent * group.extent_size};
}

}  // namespace kiln
