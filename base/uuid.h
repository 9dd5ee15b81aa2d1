// Name-based UUIDs (RFC 4122 version 5), so that filesystem, partition and
// disk identifiers follow from the recipe and two bakes agree byte for byte.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace kiln {

struct Uuid {
  std::array<uint8_t, 16> bytes{};

  // "8-4-4-4-12" lower-case form.
  std::string to_string() const;
  // Derives a version-5 UUID from kiln's namespace and a name such as
  // "<recipe hash>/root-fs".
  static Uuid from_name(std::string_view name);
  // A version-4 UUID from the system's random generator.
  static Uuid random();
};

}  // namespace kiln
