// Ipv4Subnet: an IPv4 network in CIDR form ("10.77.0.0/24"), and the
// address arithmetic kiln's networks need: their gateway and DHCP range,
// whether two overlap, and what an address in them is written as.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kiln {

// An IPv4 address in host byte order.
Result<uint32_t> parse_ipv4(std::string_view text);
std::string ipv4_text(uint32_t address);

struct Ipv4Subnet {
  uint32_t network = 0;  // host byte order, host bits clear
  int prefix = 24;

  // "10.77.0.0/24"; an address with host bits set ("10.77.0.5/24") is an
  // error that says which network was meant.
  static Result<Ipv4Subnet> parse(std::string_view text);

  uint32_t mask() const { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }
  uint32_t broadcast() const { return network | ~mask(); }
  // The n-th address of the network: 1 is the gateway kiln gives it.
  uint32_t host(uint32_t n) const { return network + n; }
  bool contains(uint32_t address) const { return (address & mask()) == network; }
  bool overlaps(const Ipv4Subnet& other) const;
  std::string to_string() const;
  std::string netmask_text() const { return ipv4_text(mask()); }
};

}  // namespace kiln
