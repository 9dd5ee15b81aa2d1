#include "base/ipv4_subnet.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

namespace kiln {

Result<uint32_t> parse_ipv4(std::string_view text) {
  in_addr address{};
  std::string copy(text);
  if (::inet_pton(AF_INET, copy.c_str(), &address) != 1)
    return fail(ErrorKind::kBadInput, "'{}' is not an IPv4 address", text);
  return ntohl(address.s_addr);
}

std::string ipv4_text(uint32_t address) {
  return fmt::format("{}.{}.{}.{}", address >> 24, (address >> 16) & 0xff, (address >> 8) & 0xff, address & 0xff);
}

Result<Ipv4Subnet> Ipv4Subnet::parse(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos)
    return fail(ErrorKind::kBadInput, "subnet '{}': expected ADDRESS/PREFIX, e.g. 10.77.0.0/24", text);
  auto address = parse_ipv4(text.substr(0, slash));
  if (!address) return fail(ErrorKind::kBadInput, "subnet '{}': {}", text, address.error().message);
  std::string_view bits = text.substr(slash + 1);
  int prefix = -1;
  auto [end, error] = std::from_chars(bits.data(), bits.data() + bits.size(), prefix);
  if (error != std::errc() || end != bits.data() + bits.size() || prefix < 0 || prefix > 32)
    return fail(ErrorKind::kBadInput, "subnet '{}': the prefix must be 0 to 32", text);
  Ipv4Subnet subnet{*address, prefix};
  subnet.network = *address & subnet.mask();
  if (subnet.network != *address)
    return fail(ErrorKind::kBadInput, "subnet '{}' has host bits set: did you mean {}?", text, subnet.to_string());
  return subnet;
}

bool Ipv4Subnet::overlaps(const Ipv4Subnet& other) const {
  uint32_t common = prefix < other.prefix ? mask() : other.mask();
  return (network & common) == (other.network & common);
}

std::string Ipv4Subnet::to_string() const { return fmt::format("{}/{}", ipv4_text(network), prefix); }

}  // namespace kiln
