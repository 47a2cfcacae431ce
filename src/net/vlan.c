/* 802.1Q tagging for NICs that are access ports of one VLAN (IEEE 802.1Q
 * 9.6: the tag is TPID 0x8100 then PCP(3) DEI(1) VID(12), inserted after the
 * destination and source addresses). Shared by every NIC model, so the
 * port's rules are written once: tag on the way out, require and remove the
 * NIC's tag on the way in, refuse frames the guest tagged itself (C-tags
 * and 802.1ad S-tags alike). */
#include <errno.h>
#include <string.h>

#include "kestrel/net.h"

/* struct virtio_net_hdr_v1 fields the tag moves (virtio v1.1 5.1.6). */
#define VNET_HDR_FLAGS	      0
#define VNET_HDR_HDR_LEN      2
#define VNET_HDR_CSUM_START   6
#define VNET_HDR_F_NEEDS_CSUM 1

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static void le16_set(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

void net_vlan_tag(uint8_t tag[NET_VLAN_HLEN], unsigned vid)
{
	tag[0] = NET_ETH_P_8021Q >> 8;
	tag[1] = NET_ETH_P_8021Q & 0xff;
	tag[2] = (uint8_t)((vid >> 8) & 0x0f);
	tag[3] = (uint8_t)vid;
}

bool net_vlan_tagged(const uint8_t *eth)
{
	uint16_t type = be16(eth + 2 * NET_ETH_ALEN);

	return type == NET_ETH_P_8021Q || type == NET_ETH_P_8021AD;
}

bool net_vlan_match(const uint8_t *tag, unsigned vid)
{
	return be16(tag) == NET_ETH_P_8021Q && (be16(tag + 2) & 0xfff) == vid;
}

bool net_vnet_hdr_tag(uint8_t *hdr)
{
	uint16_t start = le16(hdr + VNET_HDR_CSUM_START), hl = le16(hdr + VNET_HDR_HDR_LEN);

	if (hdr[VNET_HDR_FLAGS] & VNET_HDR_F_NEEDS_CSUM) {
		if (start > UINT16_MAX - NET_VLAN_HLEN)
			return false;
		le16_set(hdr + VNET_HDR_CSUM_START, (uint16_t)(start + NET_VLAN_HLEN));
	}
	if (hl && hl <= UINT16_MAX - NET_VLAN_HLEN)
		le16_set(hdr + VNET_HDR_HDR_LEN, (uint16_t)(hl + NET_VLAN_HLEN));
	return true;
}

bool net_vnet_hdr_untag(uint8_t *hdr)
{
	uint16_t start = le16(hdr + VNET_HDR_CSUM_START), hl = le16(hdr + VNET_HDR_HDR_LEN);

	if (hdr[VNET_HDR_FLAGS] & VNET_HDR_F_NEEDS_CSUM) {
		if (start < NET_ETH_HLEN + NET_VLAN_HLEN)
			return false;
		le16_set(hdr + VNET_HDR_CSUM_START, (uint16_t)(start - NET_VLAN_HLEN));
	}
	if (hl >= NET_ETH_HLEN + NET_VLAN_HLEN)
		le16_set(hdr + VNET_HDR_HDR_LEN, (uint16_t)(hl - NET_VLAN_HLEN));
	return true;
}

int net_vlan_insert(uint8_t *frame, size_t *len, size_t cap, unsigned vid)
{
	if (*len < NET_ETH_HLEN || net_vlan_tagged(frame))
		return -EINVAL;
	if (*len > cap || cap - *len < NET_VLAN_HLEN)
		return -ENOSPC;
	memmove(frame + 2 * NET_ETH_ALEN + NET_VLAN_HLEN, frame + 2 * NET_ETH_ALEN,
		*len - 2 * NET_ETH_ALEN);
	net_vlan_tag(frame + 2 * NET_ETH_ALEN, vid);
	*len += NET_VLAN_HLEN;
	return 0;
}

int net_vlan_strip(uint8_t *frame, size_t *len, unsigned vid)
{
	if (*len < NET_ETH_HLEN + NET_VLAN_HLEN || !net_vlan_match(frame + 2 * NET_ETH_ALEN, vid))
		return -ENOENT;
	memmove(frame + 2 * NET_ETH_ALEN, frame + 2 * NET_ETH_ALEN + NET_VLAN_HLEN,
		*len - 2 * NET_ETH_ALEN - NET_VLAN_HLEN);
	*len -= NET_VLAN_HLEN;
	return 0;
}
