#include "runtime/libvirt_exec.h"

#include <cstdlib>

#include <pugixml.hpp>

#include "formats/domain/libvirt_xml.h"
#include "formats/image/guest_protocol.h"

namespace kiln {
namespace {

// Whether the domain's definition has kiln's exec channel: one booted by
// a kiln from before `kiln exec --connect` has none.
bool has_agent_channel(virDomainPtr domain) {
  char* text = virDomainGetXMLDesc(domain, 0);
  if (!text) return false;
  pugi::xml_document xml;
  xml.load_string(text);
  free(text);
  for (pugi::xml_node channel : xml.child("domain").child("devices").children("channel"))
    if (channel.child("target").attribute("name").value() == std::string_view(kAgentPortName)) return true;
  return false;
}

}  // namespace

Result<std::chrono::milliseconds> LibvirtExecTarget::greeting_wait(const std::string& name, virDomainPtr domain,
                                                                    const ExecWait& wait) {
  auto [state, letter] = domain_state(domain);
  if (letter == 'p')
    return fail(ErrorKind::kFailed, "{} on {} is paused: `kiln unpause {} --connect {}` first", name, uri_, name, uri_);
  if (letter != 'r' && letter != 'b')
    return fail(ErrorKind::kFailed, "{} on {} is not running (state: {})", name, uri_, state);
  if (!has_agent_channel(domain))
    return fail(ErrorKind::kFailed, "{} on {} has no exec channel: a kiln without `kiln exec --connect` booted it; "
                "boot it again", name, uri_);
  auto metadata = parse_kiln_metadata(kiln_metadata_of(domain).value_or(""));
  if (metadata && metadata->ready_seconds) {
    KILN_TRY(check_exec_agent(name, metadata->exec));
    return wait.greeting;
  }
  // Its boot did not wait for the ready report, which libvirt keeps no
  // record of: the agent's greeting on the channel is the word that the
  // guest is up, waited for as long as --wait-ready says on top.
  return wait.greeting + wait.ready;
}

Result<> LibvirtExecTarget::open_channel(const std::string& name, virDomainPtr domain) {
  std::string what = fmt::format("the exec channel of {} on {}", name, uri_);
  auto stream = open_channel_stream(host_->connection(), domain, name, std::string(kAgentPortName));
  if (!stream)
    return fail(ErrorKind::kFailed, "{}; through libvirt a channel takes one client at a time: is another `kiln exec "
                "--connect` or `kiln cp --connect` running in {}?", stream.error().message, name);
  KILN_ASSIGN(channel_, LibvirtStreamSocket::bridge(std::move(*stream), what));
  KILN_ASSIGN(TempDir dir, TempDir::create(std::filesystem::temp_directory_path(), "kiln-exec"));
  socket_dir_.emplace(std::move(dir));
  KILN_ASSIGN(relay_, AgentRelay::start(socket_dir_->path() / "exec.sock"));
  // The agent greeted whoever held the channel when it started: asked,
  // it greets this relay.
  relay_->attach(channel_->release(), kVirtioPortWindow, /*ask_hello=*/true);
  return {};
}

Result<ExecEndpoint> LibvirtExecTarget::reach(const std::string& name, const ExecWait& wait) {
  if (endpoint_ && name == name_) return *endpoint_;
  if (endpoint_)
    return fail(ErrorKind::kBadInput, "one kiln command reaches one instance on {}: {} already, not {}", uri_, name_,
                name);
  if (!host_) {
    KILN_ASSIGN(LibvirtHost host, LibvirtHost::open(uri_));
    host_.emplace(std::move(host));
  }
  KILN_ASSIGN(LibvirtDomain domain, host_->domain(name));
  KILN_ASSIGN(std::chrono::milliseconds greeting, greeting_wait(name, domain.get(), wait));
  KILN_TRY(open_channel(name, domain.get()));
  name_ = name;
  endpoint_ = ExecEndpoint{socket_dir_->path() / "exec.sock", greeting, {}};
  return *endpoint_;
}

}  // namespace kiln
