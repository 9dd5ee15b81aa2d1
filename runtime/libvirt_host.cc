#include "runtime/libvirt_host.h"

#include <fcntl.h>
#include <libvirt/virterror.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

#include <fmt/ranges.h>
#include <pugixml.hpp>

#include "base/files.h"
#include "formats/domain/libvirt_xml.h"

namespace kiln {
namespace {

// libvirt prints each error on stderr by default as well; kiln says it once.
void quiet(void*, virErrorPtr) {}

std::string xml_escaped(const std::string& text) {
  pugi::xml_document document;
  document.append_child(pugi::node_pcdata).set_value(text.c_str());
  std::ostringstream out;
  document.save(out, "", pugi::format_raw | pugi::format_no_declaration);
  return out.str();
}

// The upload's source, read as libvirt's sparse stream asks: data, holes
// skipped, in the file's order.
struct UploadFile {
  int fd;
};

int send_data(virStreamPtr, char* data, size_t size, void* opaque) {
  ssize_t got = ::read(static_cast<UploadFile*>(opaque)->fd, data, size);
  return static_cast<int>(got);
}

// Whether the file at its offset is in data or a hole, and for how long.
int in_data(virStreamPtr, int* in, long long* length, void* opaque) {
  int fd = static_cast<UploadFile*>(opaque)->fd;
  off_t here = ::lseek(fd, 0, SEEK_CUR);
  if (here < 0) return -1;
  off_t data = ::lseek(fd, here, SEEK_DATA);
  if (data < 0) {
    if (errno != ENXIO) return -1;
    off_t end = ::lseek(fd, 0, SEEK_END);  // a hole to the end, or the end
    if (end < 0) return -1;
    *in = 0;
    *length = end - here;
  } else if (data > here) {
    *in = 0;
    *length = data - here;
  } else {
    off_t hole = ::lseek(fd, here, SEEK_HOLE);
    if (hole < 0) return -1;
    *in = 1;
    *length = hole - here;
  }
  return ::lseek(fd, here, SEEK_SET) < 0 ? -1 : 0;
}

int skip_hole(virStreamPtr, long long length, void* opaque) {
  return ::lseek(static_cast<UploadFile*>(opaque)->fd, length, SEEK_CUR) < 0 ? -1 : 0;
}

// A download from one host sent on as an upload to another, holes as
// holes: the data never lands on this machine.
struct Relay {
  virStreamPtr upload;
  uint64_t& bytes;
};

int relay_data(virStreamPtr, const char* data, size_t size, void* opaque) {
  auto* relay = static_cast<Relay*>(opaque);
  for (size_t done = 0; done < size;) {
    int sent = virStreamSend(relay->upload, data + done, size - done);
    if (sent <= 0) return -1;
    done += sent;
  }
  relay->bytes += size;
  return static_cast<int>(size);
}

int relay_hole(virStreamPtr, long long length, void* opaque) {
  return virStreamSendHole(static_cast<Relay*>(opaque)->upload, length, 0);
}

// A volume whose upload ended is marked by a second, empty one: a volume
// without its mark is what an interrupted upload left, and goes.
std::string done_mark(const std::string& name) { return name + ".done"; }

// A volume being uploaded is claimed by a third, empty one, which only one
// client can make (libvirt refuses a name that exists): two boots of one
// image on a host at once upload it once, the second waiting for the
// first. A claim whose upload has not grown for kStaleClaim was left by a
// kiln that was killed, and is taken over.
std::string upload_claim(const std::string& name) { return name + ".uploading"; }
constexpr std::chrono::seconds kStaleClaim{60};

std::string volume_xml(const std::string& name, uint64_t capacity, const char* format,
                       const std::string& backing = "") {
  std::string xml = fmt::format("<volume><name>{}</name><capacity unit='bytes'>{}</capacity><allocation>0</allocation>"
                                "<target><format type='{}'/></target>",
                                xml_escaped(name), capacity, format);
  if (!backing.empty())
    xml += fmt::format("<backingStore><path>{}</path><format type='raw'/></backingStore>", xml_escaped(backing));
  return xml + "</volume>";
}

std::string volume_path(virStorageVolPtr volume) {
  char* path = virStorageVolGetPath(volume);
  std::string out = path ? path : "";
  free(path);
  return out;
}

Result<LibvirtVolumeFacts> facts_of(virStorageVolPtr volume) {
  LibvirtVolumeFacts facts;
  const char* name = virStorageVolGetName(volume);
  facts.name = name ? name : "";
  facts.path = volume_path(volume);
  virStorageVolInfo info{};
  if (virStorageVolGetInfo(volume, &info) != 0) return std::unexpected(libvirt_error("volume " + facts.name));
  facts.capacity = info.capacity;
  char* text = virStorageVolGetXMLDesc(volume, 0);
  if (!text) return std::unexpected(libvirt_error("volume " + facts.name));
  pugi::xml_document xml;
  xml.load_string(text);
  free(text);
  facts.backing_path = xml.child("volume").child("backingStore").child_value("path");
  return facts;
}

}  // namespace

Error libvirt_error(const std::string& what) {
  const char* message = virGetLastErrorMessage();
  return Error{ErrorKind::kFailed, fmt::format("{}: {}", what, message ? message : "libvirt gave no reason"), {}, {}};
}

Result<LibvirtHost> LibvirtHost::open(const std::string& uri) {
  virSetErrorFunc(nullptr, quiet);
  virConnectPtr connection = virConnectOpenAuth(uri.c_str(), virConnectAuthPtrDefault, 0);
  if (!connection) return std::unexpected(libvirt_error("cannot reach libvirt at " + uri));
  return LibvirtHost(uri, connection);
}

Result<LibvirtCapabilities> LibvirtHost::capabilities() const {
  char* text = virConnectGetCapabilities(connection());
  if (!text) return std::unexpected(libvirt_error(uri_ + ": capabilities"));
  pugi::xml_document capabilities;
  capabilities.load_string(text);
  free(text);
  auto kvm = capabilities.select_node("/capabilities/guest[arch/@name='x86_64']/arch/domain[@type='kvm']");
  return LibvirtCapabilities{static_cast<bool>(kvm), capabilities.child("capabilities").child("host").child_value("uuid")};
}

Result<virStoragePoolPtr> LibvirtHost::pool() {
  if (pool_) return pool_.get();
  virStoragePoolPtr found = virStoragePoolLookupByName(connection(), kKilnPoolName);
  if (!found) {
    std::string xml = fmt::format("<pool type='dir'><name>{}</name><target><path>{}</path></target></pool>",
                                  kKilnPoolName, kKilnPoolPath);
    found = virStoragePoolDefineXML(connection(), xml.c_str(), 0);
    if (found) {
      if (virStoragePoolBuild(found, 0) != 0) {
        Error error = libvirt_error(fmt::format("{}: building storage pool {}", uri_, kKilnPoolName));
        virStoragePoolFree(found);
        return std::unexpected(error);
      }
      virStoragePoolSetAutostart(found, 1);
    } else if (!(found = virStoragePoolLookupByName(connection(), kKilnPoolName))) {
      // (Another kiln may have defined it meanwhile: then it is found.)
      return std::unexpected(libvirt_error(fmt::format("{}: defining storage pool {}", uri_, kKilnPoolName)));
    }
  }
  pool_.reset(found);
  if (virStoragePoolIsActive(found) != 1 && virStoragePoolCreate(found, 0) != 0 && virStoragePoolIsActive(found) != 1)
    return std::unexpected(libvirt_error(fmt::format("{}: starting storage pool {}", uri_, kKilnPoolName)));
  virStoragePoolRefresh(found, 0);
  return found;
}

Result<std::string> LibvirtHost::whole_volume(const std::string& name, uint64_t size, const std::string& from,
                                              const std::function<bool(virStreamPtr)>& send, bool& uploaded) {
  uploaded = false;
  KILN_ASSIGN(virStoragePoolPtr pool, pool());
  KILN_ASSIGN(std::optional<std::string> whole, claim_upload(pool, name));
  if (whole) return *whole;
  // Claimed: the volume is this upload's to make, and the claim goes
  // however it ends.
  struct Release {
    virStoragePoolPtr pool;
    std::string claim;
    ~Release() {
      std::unique_ptr<virStorageVol, LibvirtDeleter> volume(virStorageVolLookupByName(pool, claim.c_str()));
      if (volume) virStorageVolDelete(volume.get(), 0);
    }
  } release{pool, upload_claim(name)};
  std::unique_ptr<virStorageVol, LibvirtDeleter> volume(virStorageVolLookupByName(pool, name.c_str()));
  if (volume) virStorageVolDelete(volume.get(), 0);
  volume.reset(virStorageVolCreateXML(pool, volume_xml(name, size, "raw").c_str(), 0));
  if (!volume) return std::unexpected(libvirt_error(fmt::format("{}: making volume {}", uri_, name)));
  LibvirtStream stream(virStreamNew(connection(), 0));
  bool sent = stream && virStorageVolUpload(volume.get(), stream.get(), 0, 0, VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM) == 0 &&
              send(stream.get()) && virStreamFinish(stream.get()) == 0;
  if (!sent) {
    Error error = libvirt_error(fmt::format("{}: uploading {} to volume {}", uri_, from, name));
    if (stream) virStreamAbort(stream.get());
    virStorageVolDelete(volume.get(), 0);
    return std::unexpected(error);
  }
  std::unique_ptr<virStorageVol, LibvirtDeleter> mark(
      virStorageVolCreateXML(pool, volume_xml(done_mark(name), 0, "raw").c_str(), 0));
  if (!mark) return std::unexpected(libvirt_error(fmt::format("{}: marking volume {} whole", uri_, name)));
  uploaded = true;
  return volume_path(volume.get());
}

Result<std::optional<std::string>> LibvirtHost::claim_upload(virStoragePoolPtr pool, const std::string& name) {
  using Clock = std::chrono::steady_clock;
  auto progress_at = Clock::now();
  std::optional<unsigned long long> last_allocation;
  while (true) {
    std::unique_ptr<virStorageVol, LibvirtDeleter> volume(virStorageVolLookupByName(pool, name.c_str()));
    std::unique_ptr<virStorageVol, LibvirtDeleter> mark(virStorageVolLookupByName(pool, done_mark(name).c_str()));
    if (volume && mark) return std::optional(volume_path(volume.get()));
    std::unique_ptr<virStorageVol, LibvirtDeleter> claim(
        virStorageVolCreateXML(pool, volume_xml(upload_claim(name), 0, "raw").c_str(), 0));
    if (claim) {
      // The other upload may have ended between the look and the claim.
      mark.reset(virStorageVolLookupByName(pool, done_mark(name).c_str()));
      volume.reset(virStorageVolLookupByName(pool, name.c_str()));
      if (volume && mark) {
        virStorageVolDelete(claim.get(), 0);
        return std::optional(volume_path(volume.get()));
      }
      return std::optional<std::string>();
    }
    virErrorPtr error = virGetLastError();
    if (!error || error->code != VIR_ERR_STORAGE_VOL_EXIST)
      return std::unexpected(libvirt_error(fmt::format("{}: claiming the upload of volume {}", uri_, name)));
    // Another client uploads it: wait while its volume grows.
    virStorageVolInfo info{};
    if (volume && virStorageVolGetInfo(volume.get(), &info) == 0 && info.allocation != last_allocation) {
      last_allocation = info.allocation;
      progress_at = Clock::now();
    }
    if (Clock::now() - progress_at > kStaleClaim) {
      if (std::unique_ptr<virStorageVol, LibvirtDeleter> stale{
              virStorageVolLookupByName(pool, upload_claim(name).c_str())})
        virStorageVolDelete(stale.get(), 0);
      progress_at = Clock::now();
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

Result<std::string> LibvirtHost::volume_from_file(const std::string& name, const std::filesystem::path& file,
                                                  bool& uploaded) {
  KILN_ASSIGN(UniqueFd fd, open_file(file, O_RDONLY | O_CLOEXEC));
  off_t size = ::lseek(fd.get(), 0, SEEK_END);
  if (size < 0 || ::lseek(fd.get(), 0, SEEK_SET) < 0) return fail_errno("cannot read", file.string(), errno);
  UploadFile source{fd.get()};
  return whole_volume(name, size, file.string(), [&](virStreamPtr stream) {
    return virStreamSparseSendAll(stream, send_data, in_data, skip_hole, &source) == 0;
  }, uploaded);
}

Result<std::string> LibvirtHost::volume_from_bytes(const std::string& name, const std::string& bytes) {
  bool uploaded = false;
  return whole_volume(name, bytes.size(), name, [&](virStreamPtr stream) {
    return virStreamSend(stream, bytes.data(), bytes.size()) == static_cast<int>(bytes.size());
  }, uploaded);
}

Result<std::string> LibvirtHost::volume_from_host(const LibvirtVolumeFacts& volume, LibvirtHost& source,
                                                  uint64_t& bytes, bool& uploaded) {
  std::unique_ptr<virStorageVol, LibvirtDeleter> from(virStorageVolLookupByPath(source.connection(), volume.path.c_str()));
  if (!from) return std::unexpected(libvirt_error(fmt::format("{}: volume {}", source.uri(), volume.name)));
  std::string what = fmt::format("{} on {}", volume.name, source.uri());
  return whole_volume(volume.name, volume.capacity, what, [&](virStreamPtr upload) {
    LibvirtStream download(virStreamNew(source.connection(), 0));
    Relay relay{upload, bytes};
    return download &&
           virStorageVolDownload(from.get(), download.get(), 0, 0, VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM) == 0 &&
           virStreamSparseRecvAll(download.get(), relay_data, relay_hole, &relay) == 0 &&
           virStreamFinish(download.get()) == 0;
  }, uploaded);
}

Result<LibvirtVolumeFacts> LibvirtHost::volume_at(const std::string& path) const {
  std::unique_ptr<virStorageVol, LibvirtDeleter> volume(virStorageVolLookupByPath(connection(), path.c_str()));
  if (!volume) return std::unexpected(libvirt_error(fmt::format("{}: the volume at {}", uri_, path)));
  return facts_of(volume.get());
}

Result<std::string> LibvirtHost::overlay_volume(const std::string& name, const std::string& base_path,
                                                uint64_t capacity) {
  KILN_ASSIGN(virStoragePoolPtr pool, pool());
  if (virStorageVolPtr old = virStorageVolLookupByName(pool, name.c_str())) {
    virStorageVolDelete(old, 0);
    virStorageVolFree(old);
  }
  std::unique_ptr<virStorageVol, LibvirtDeleter> volume(
      virStorageVolCreateXML(pool, volume_xml(name, capacity, "qcow2", base_path).c_str(), 0));
  if (!volume) return std::unexpected(libvirt_error(fmt::format("{}: making overlay volume {}", uri_, name)));
  return volume_path(volume.get());
}

void LibvirtHost::remove_volumes(const std::string& prefix) {
  auto found = pool();
  if (!found) return;
  virStoragePoolRefresh(*found, 0);
  virStorageVolPtr* volumes = nullptr;
  int count = virStoragePoolListAllVolumes(*found, &volumes, 0);
  for (int i = 0; i < count; ++i) {
    const char* name = virStorageVolGetName(volumes[i]);
    if (name && std::string_view(name).starts_with(prefix)) virStorageVolDelete(volumes[i], 0);
    virStorageVolFree(volumes[i]);
  }
  free(volumes);
}

std::optional<std::string> kiln_metadata_of(virDomainPtr domain) {
  char* text = virDomainGetMetadata(domain, VIR_DOMAIN_METADATA_ELEMENT, kKilnMetadataNamespace, 0);
  if (!text) return std::nullopt;
  std::string out = text;
  free(text);
  return out;
}

Result<> LibvirtHost::check_network(const std::string& name) const {
  std::unique_ptr<virNetwork, LibvirtDeleter> network(virNetworkLookupByName(connection(), name.c_str()));
  if (network && virNetworkIsActive(network.get()) == 1) return {};
  if (network)
    return fail(ErrorKind::kBadInput, "the libvirt network {} on {} is not active (`virsh net-start {}`)", name, uri_,
                name);
  std::vector<std::string> names;
  virNetworkPtr* networks = nullptr;
  int count = virConnectListAllNetworks(connection(), &networks, 0);
  for (int i = 0; i < count; ++i) {
    names.push_back(virNetworkGetName(networks[i]));
    virNetworkFree(networks[i]);
  }
  free(networks);
  return fail(ErrorKind::kBadInput, "{} has no libvirt network named {} (it has: {})", uri_, name,
              names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", ")));
}

Result<LibvirtDomain> LibvirtHost::domain(const std::string& name) const {
  LibvirtDomain found(virDomainLookupByName(connection(), name.c_str()));
  if (!found || !kiln_metadata_of(found.get()))
    return fail(ErrorKind::kBadInput, "{} has no instance named {} (see `kiln list --connect {}`)", uri_, name, uri_);
  return found;
}

std::vector<LibvirtDomain> LibvirtHost::kiln_domains() const {
  std::vector<LibvirtDomain> out;
  virDomainPtr* domains = nullptr;
  int count = virConnectListAllDomains(connection(), &domains, 0);
  for (int i = 0; i < count; ++i) {
    LibvirtDomain domain(domains[i]);
    if (kiln_metadata_of(domain.get())) out.push_back(std::move(domain));
  }
  free(domains);
  return out;
}

// A domain shut off by a save is "saved", as a saved kiln instance is.
std::pair<std::string, char> domain_state(virDomainPtr domain) {
  int state = 0, reason = 0;
  if (virDomainGetState(domain, &state, &reason, 0) != 0) return {"unknown", '?'};
  switch (state) {
    case VIR_DOMAIN_RUNNING: return {"running", 'r'};
    case VIR_DOMAIN_BLOCKED: return {"blocked", 'b'};
    case VIR_DOMAIN_PAUSED: return {"paused", 'p'};
    case VIR_DOMAIN_SHUTDOWN: return {"shutting-down", 's'};
    case VIR_DOMAIN_CRASHED: return {"crashed", 'c'};
    case VIR_DOMAIN_SHUTOFF:
      if (reason == VIR_DOMAIN_SHUTOFF_SAVED) return {"saved", '-'};
      break;
  }
  return {"stopped", '-'};
}

}  // namespace kiln
