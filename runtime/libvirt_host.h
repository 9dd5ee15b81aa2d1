// LibvirtHost: a libvirt host (local or remote, by URI) as the libvirt
// backend uses it, through libvirt's C API: whether KVM works there, kiln's
// storage pool on it (the images that boot there, uploaded once each and
// found again by their content hash; each instance's overlay and seed
// disk), and the domains kiln defines. Every call's error is libvirt's own
// message, named by what kiln was doing.
#pragma once

#include <libvirt/libvirt.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"

namespace kiln {

// The name of kiln's storage pool on every host, and where a pool that
// kiln makes keeps its volumes.
inline constexpr const char* kKilnPoolName = "kiln";
inline constexpr const char* kKilnPoolPath = "/var/lib/libvirt/images/kiln";

struct LibvirtDeleter {
  void operator()(virConnectPtr p) const { virConnectClose(p); }
  void operator()(virDomainPtr p) const { virDomainFree(p); }
  void operator()(virStoragePoolPtr p) const { virStoragePoolFree(p); }
  void operator()(virStorageVolPtr p) const { virStorageVolFree(p); }
  void operator()(virStreamPtr p) const { virStreamFree(p); }
  void operator()(virNetworkPtr p) const { virNetworkFree(p); }
};
using LibvirtDomain = std::unique_ptr<virDomain, LibvirtDeleter>;
using LibvirtStream = std::unique_ptr<virStream, LibvirtDeleter>;

// A volume of kiln's pool as libvirt describes it.
struct LibvirtVolumeFacts {
  std::string name, path;
  uint64_t capacity = 0;
  std::string backing_path;  // an overlay's base; "" for others
};

struct LibvirtCapabilities {
  bool kvm = false;
  std::string host_uuid;
};

class LibvirtHost {
 public:
  static Result<LibvirtHost> open(const std::string& uri);

  const std::string& uri() const { return uri_; }
  virConnectPtr connection() const { return connection_.get(); }
  // What the host's capabilities say: whether they offer KVM for x86_64
  // (runtime/libvirt_kvm_probe says whether it works), and its UUID.
  Result<LibvirtCapabilities> capabilities() const;

  // The path on the host of volume `name` in kiln's pool, made from
  // `file` by an upload (sparse: holes are not sent) unless the pool has
  // it whole already. `uploaded` says whether it was sent.
  Result<std::string> volume_from_file(const std::string& name, const std::filesystem::path& file, bool& uploaded);
  // The same, holding `bytes`.
  Result<std::string> volume_from_bytes(const std::string& name, const std::string& bytes);
  // The same, from `volume` of kiln's pool on `source` (same name here),
  // sent on from there as it is read (sparse); `bytes` counts the data sent.
  Result<std::string> volume_from_host(const LibvirtVolumeFacts& volume, LibvirtHost& source, uint64_t& bytes,
                                       bool& uploaded);
  Result<LibvirtVolumeFacts> volume_at(const std::string& path) const;
  // A qcow2 volume over the raw volume at `base_path` of `capacity` bytes.
  Result<std::string> overlay_volume(const std::string& name, const std::string& base_path, uint64_t capacity);
  // Removes the pool's volumes whose names start with `prefix`.
  void remove_volumes(const std::string& prefix);

  // Checks that the host has an active libvirt network `name`; the error
  // names the ones it has.
  Result<> check_network(const std::string& name) const;

  // Domains kiln made (marked by its metadata), by name.
  Result<LibvirtDomain> domain(const std::string& name) const;
  std::vector<LibvirtDomain> kiln_domains() const;

 private:
  LibvirtHost(std::string uri, virConnectPtr connection) : uri_(std::move(uri)), connection_(connection) {}
  Result<virStoragePoolPtr> pool();
  // Volume `name`, made whole by `send` (writing to the upload stream)
  // unless the pool has it whole already; `from` names the data. One
  // client at a time uploads a volume; the others wait for it.
  Result<std::string> whole_volume(const std::string& name, uint64_t size, const std::string& from,
                                   const std::function<bool(virStreamPtr)>& send, bool& uploaded);
  // The path of volume `name` once it is whole (uploaded by another
  // client, perhaps while this one waited), or nullopt once this client
  // holds the claim to upload it.
  Result<std::optional<std::string>> claim_upload(virStoragePoolPtr pool, const std::string& name);

  std::string uri_;
  std::unique_ptr<virConnect, LibvirtDeleter> connection_;
  std::unique_ptr<virStoragePool, LibvirtDeleter> pool_;
};

// libvirt's message for the call that just failed, as an error naming `what`.
Error libvirt_error(const std::string& what);

// The domain's state as kiln's own instances say it ("running", "paused",
// "saved"...), and its letter in `kiln list`.
std::pair<std::string, char> domain_state(virDomainPtr domain);

// The kiln metadata of `domain`, if it has some.
std::optional<std::string> kiln_metadata_of(virDomainPtr domain);

}  // namespace kiln
