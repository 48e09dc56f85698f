"""The query schema of each resource: which fields exist and which are keys.

Each resource lists its fields twice over: ``*_SERVED``, what swdepot answers with, and
``*_ACCEPTED``, the rest of what netapp-ontap 9.19's model of the resource may ask for
(``gettable_fields``, nested objects included). An accepted field is valid in
``fields``, filters and ``order_by``, as on a real ONTAP, but nothing stands behind it
here, so it is absent from every answer and a filter on it matches no record; why each
is left out is in ``docs/compatibility.md`` ("Fields 9.16+ clients read").
``tests/test_fields.py`` holds both lists to the installed netapp-ontap models.

Names are written as in ``fields`` (``a.{b,c}`` braces); an object's path comes with
its fields' (``a.b.c`` brings ``a`` and ``a.b``).
"""

from __future__ import annotations

from collections.abc import Iterable

from swdepot.api.query import ResourceSchema, expand_fields


def paths(patterns: Iterable[str]) -> frozenset[str]:
    """Every dotted path the patterns name, with the objects that hold them."""
    found: set[str] = set()
    for pattern in patterns:
        for path in expand_fields(pattern):
            parts = path.split(".")
            found.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return frozenset(found)


def _schema(served: tuple[str, ...], keys: tuple[str, ...], *,
            accepted: tuple[str, ...] = (), numeric: str = "") -> ResourceSchema:
    return ResourceSchema(fields=paths((*served, *accepted)), key_fields=keys,
                          numeric_fields=frozenset(numeric.split()))


JOB_SERVED = ("uuid", "description", "state", "message", "code", "start_time", "end_time",
              "error.{code,message}", "node.name", "target", "_links")  # target: swdepot's
JOB_ACCEPTED = (
    "error.arguments.{code,message}",  # messages come formatted, without arguments
    "svm.{name,uuid,_links}",  # every job here is the cluster's
)
JOB = _schema(JOB_SERVED, ("uuid",), accepted=JOB_ACCEPTED, numeric="code")

PACKAGE = _schema(
    ("version", "create_time", "file_name", "kind", "size", "sha256", "product", "signer",
     "_links"),
    ("version",),
    numeric="size",
)
DOWNLOAD = _schema(
    ("state", "message", "code", "bytes_done", "bytes_total", "speed", "job.uuid", "_links"),
    (),
)

NODE_SERVED = ("uuid", "name", "state", "membership", "model", "uptime",
               "version.{full,generation,major,minor}", "_links")
NODE_ACCEPTED = (
    # operator strings swdepot is not configured with
    "location", "owner",
    # hardware
    "date", "serial_number", "system_id", "system_machine_type", "vendor_serial_number",
    "controller.{board,memory_size,over_temperature}",
    "controller.cpu.{count,firmware_release,processor}",
    "controller.{failed_fan,failed_power_supply}.{count,message.{code,message}}",
    "controller.flash_cache.{capacity,device_id,firmware_file,firmware_version,"
    "hardware_revision,model,part_number,serial_number,slot,state}",
    "controller.frus.{id,state,type}",
    "external_cache.{is_enabled,is_hya_enabled,is_rewarm_enabled,pcs_size}",
    "external_cache_bypass.{enabled,large_read_ops_allow_percent}",
    "nvlog.{backing_type,swap_mode}",
    "nvram.{battery_state,id}",
    "vm.provider_type",
    # HA (simulated inside an update only)
    "ha.{enabled,type,auto_giveback,auto_giveback_of,enable_takeover_of,"
    "giveback_of_possible,takeover_of_possible}",
    "ha.{giveback,giveback_of,takeover,takeover_of}.{state,failure.{code,message}}",
    "ha.giveback.status.{state,aggregate.{name,uuid,_links},error.{code,message}}",
    "ha.interconnect.{adapter,state}",
    "ha.partners.{name,uuid,_links}",
    "ha.peering.{ineligible,node_protection_level}",
    "ha.peering.{dst_peer_node1,dst_peer_node2,dst_peer_node3}.{name,uuid}",
    "ha.ports.{number,state}",
    "ha.takeover_check.{reasons,takeover_possible}",
    "hw_assist.status.enabled",
    "hw_assist.status.{local,partner}.{ip,port,state}",
    # service processor / BMC
    "service_processor.{autoupdate_enabled,dhcp_enabled,firmware_version,is_ip_configured,"
    "last_update_state,link_status,mac_address,state,type}",
    "service_processor.api_service.{enabled,limit_access,port}",
    "service_processor.auto_config.{ipv4_subnet,ipv6_subnet}",
    "service_processor.{primary,backup}.{is_current,state,version}",
    "service_processor.ipv4_interface.{address,enabled,gateway,netmask,setup_state}",
    "service_processor.ipv6_interface.{address,enabled,gateway,is_ipv6_ra_enabled,"
    "link_local_ip,netmask,router_ip,setup_state}",
    "service_processor.ssh_info.allowed_addresses",
    "service_processor.web_service.{enabled,limit_access}",
    # network, storage, MetroCluster, performance
    "{cluster_interfaces,management_interfaces}.{name,uuid,_links,ip.address}",
    "metrocluster.{custom_vlan_capable,type,ports.name}",
    "is_spares_low", "storage_configuration", "anti_ransomware_version",
    "snaplock.compliance_clock_time",
    "system_aggregate.{name,uuid,_links}",
    "storage_availability_zones.{name,uuid,_links,nodes.{name,uuid,_links}}",
    "storage_availability_zones.space.{available,delayed_frees,full_threshold_percent,"
    "inactive_data,log_and_recovery_metadata,logical_user_data_without_snapshots,"
    "nearly_full_threshold_percent,physical_used,physical_used_percent,"
    "physical_user_data_without_snapshots,size,total_metadata_used,unusable}",
    "storage_availability_zones.space.efficiency_without_snapshots.{ratio,savings}",
    "metric.{_links,duration,processor_utilization,status,timestamp,uuid}",
    "statistics.{processor_utilization_base,processor_utilization_raw,status,timestamp}",
)
NODE = _schema(NODE_SERVED, ("uuid", "name"), accepted=NODE_ACCEPTED, numeric="uptime")

SOFTWARE_HISTORY = _schema(
    ("node.{name,uuid,_links}", "start_time", "end_time", "from_version", "to_version",
     "state"),
    ("node", "start_time"),  # [I] no key of its own: who and when name a record
)

CLUSTER_SERVED = ("name", "uuid", "version.{full,generation,major,minor}", "timezone.name",
                  "_links")
CLUSTER_ACCEPTED = (
    # operator strings swdepot is not configured with
    "contact", "location",
    # what this is not: an All SAN Array, a disaggregated cluster
    "san_optimized", "disaggregated",
    # services swdepot does not manage
    "dns_domains", "name_servers", "ntp_servers",
    "certificate.{name,uuid,_links}",
    "management_interfaces.{name,uuid,_links,ip.{address,family,netmask}}",
    "active_directory.{fqdn,name,organizational_unit,security.advertised_kdc_encryptions}",
    "peering_policy.{authentication_required,encryption_required,minimum_passphrase_length}",
    "ha.failover_protection_level",
    "auto_enable_activity_tracking", "auto_enable_analytics",
    "cluster_network_overlay_enabled", "_tags",
    # performance
    "metric.{_links,duration,status,timestamp}",
    "metric.{iops,latency,throughput}.{read,write,other,total}",
    "statistics.{status,timestamp}",
    "statistics.{iops_raw,latency_raw,throughput_raw}.{read,write,other,total}",
)
CLUSTER = _schema(CLUSTER_SERVED, (), accepted=CLUSTER_ACCEPTED)

_CHECKS = "{update_check,status,issue.message,action.message}"
SOFTWARE_SERVED = (
    "version", "pending_version", "state", "elapsed_duration", "estimated_duration",
    "start_time", "end_time",  # swdepot's additions
    "nodes.{name,version,model}",
    f"validation_results.{_CHECKS}",
    f"post_update_checks.{_CHECKS}",
    "update_details.{phase,state,node.name,elapsed_duration,estimated_duration}",
    "status_details.{name,state,node.name,start_time,end_time,issue.{code,message},"
    "action.{code,message}}",
    "_links",
)
SOFTWARE_ACCEPTED = (
    "action",  # a PATCH's trigger, never read back
    "metrocluster.clusters.{name,state,elapsed_duration,estimated_duration}",
    "metrocluster.{progress_details,progress_summary}.message",
    "nodes.software_images",  # netapp-ontap reads strings, ONTAP sends {package} objects
    # firmware: stored, never installed
    "nodes.firmware.disk.{update_status,num_waiting_download,average_duration_per_disk,"
    "total_completion_estimate}",
    "nodes.firmware.shelf.{update_status,in_progress_count}",
    "nodes.firmware.dqp.{file_name,version,revision,record_count.{drive,alias,device,system}}",
    "nodes.firmware.sp_bmc.{fw_type,image,state,running_version,is_current,in_progress,"
    "percent_done,last_update_state,start_time,end_time,autoupdate}",
    "nodes.firmware.system_firmware.{running_bios_version,running_loader_version,"
    "boot_media_bios_version,boot_media_loader_version,install_pending}",
    "nodes.firmware.cluster_fw_progress.{job.{uuid,_links},zip_file_name,update_type}",
    "nodes.firmware.cluster_fw_progress.update_state.{attempts,code,message,status,"
    "worker_node.{name,uuid,_links}}",
)
SOFTWARE = _schema(SOFTWARE_SERVED, (), accepted=SOFTWARE_ACCEPTED)
