/* src/net/vlan.c: the access port's tag rules on flat frames and on the
 * vnet header's offsets, as every NIC model uses them. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "kestrel/net.h"
#include "fake_board.h"

static const uint8_t dst[6] = { 0x52, 0x54, 0x00, 0x00, 0x00, 0x01 };
static const uint8_t src[6] = { 0x52, 0x54, 0x00, 0x00, 0x00, 0x02 };

static size_t frame(uint8_t *f, uint16_t type, size_t len)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = (uint8_t)(type >> 8);
	f[13] = (uint8_t)type;
	for (size_t i = 14; i < len; i++)
		f[i] = (uint8_t)i;
	return len;
}

START_TEST(test_tag_bytes)
{
	uint8_t t[4];

	net_vlan_tag(t, 4094);
	ck_assert_int_eq(t[0], 0x81);
	ck_assert_int_eq(t[1], 0x00);
	ck_assert_int_eq(t[2], 0x0f);
	ck_assert_int_eq(t[3], 0xfe);
	ck_assert(net_vlan_match(t, 4094));
	ck_assert(!net_vlan_match(t, 5));
	t[0] = 0x88;
	t[1] = 0xa8;
	ck_assert(!net_vlan_match(t, 4094)); /* an S-tag is not the port's C-tag */
}
END_TEST

START_TEST(test_insert_strip_roundtrip)
{
	uint8_t f[128], orig[128];
	size_t len = frame(f, 0x0800, 60);

	memcpy(orig, f, len);
	ck_assert_int_eq(net_vlan_insert(f, &len, sizeof(f), 5), 0);
	ck_assert_uint_eq(len, 64);
	ck_assert_mem_eq(f, orig, 12);
	ck_assert(net_vlan_match(f + 12, 5));
	ck_assert_mem_eq(f + 16, orig + 12, 48);
	ck_assert_int_eq(net_vlan_strip(f, &len, 6), -ENOENT);
	ck_assert_int_eq(net_vlan_strip(f, &len, 5), 0);
	ck_assert_uint_eq(len, 60);
	ck_assert_mem_eq(f, orig, 60);
	/* Untagged frames do not pass the port inward. */
	ck_assert_int_eq(net_vlan_strip(f, &len, 5), -ENOENT);
}
END_TEST

START_TEST(test_insert_refused)
{
	uint8_t f[64];
	size_t len = frame(f, 0x8100, 60);

	ck_assert_int_eq(net_vlan_insert(f, &len, sizeof(f), 5), -EINVAL); /* guest-tagged */
	len = frame(f, 0x88a8, 60);
	ck_assert_int_eq(net_vlan_insert(f, &len, sizeof(f), 5), -EINVAL); /* S-tag */
	len = frame(f, 0x0800, 62);
	ck_assert_int_eq(net_vlan_insert(f, &len, sizeof(f), 5), -ENOSPC);
	ck_assert_uint_eq(len, 62);
	len = 13;
	ck_assert_int_eq(net_vlan_insert(f, &len, sizeof(f), 5), -EINVAL); /* runt */
	len = 17;
	ck_assert_int_eq(net_vlan_strip(f, &len, 5), -ENOENT);
}
END_TEST

static void hdr_set(uint8_t *h, uint8_t flags, uint16_t hdr_len, uint16_t start)
{
	memset(h, 0, NET_VNET_HDR_LEN);
	h[0] = flags;
	h[2] = (uint8_t)hdr_len;
	h[3] = (uint8_t)(hdr_len >> 8);
	h[6] = (uint8_t)start;
	h[7] = (uint8_t)(start >> 8);
}

START_TEST(test_vnet_hdr_offsets)
{
	uint8_t h[NET_VNET_HDR_LEN];

	hdr_set(h, 1, 54, 34);
	ck_assert(net_vnet_hdr_tag(h));
	ck_assert_int_eq(h[2] | h[3] << 8, 58);
	ck_assert_int_eq(h[6] | h[7] << 8, 38);
	ck_assert(net_vnet_hdr_untag(h));
	ck_assert_int_eq(h[2] | h[3] << 8, 54);
	ck_assert_int_eq(h[6] | h[7] << 8, 34);
	/* Without NEEDS_CSUM csum_start means nothing and stays. */
	hdr_set(h, 0, 0, 3);
	ck_assert(net_vnet_hdr_tag(h));
	ck_assert_int_eq(h[6] | h[7] << 8, 3);
	ck_assert_int_eq(h[2] | h[3] << 8, 0);
	/* A checksum starting inside the removed tag, or an offset that
	 * cannot grow: the frame is dropped. */
	hdr_set(h, 1, 0, 16);
	ck_assert(!net_vnet_hdr_untag(h));
	hdr_set(h, 1, 0, 65534);
	ck_assert(!net_vnet_hdr_tag(h));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("vlan");
	TCase *tc = tcase_create("vlan");

	tcase_add_test(tc, test_tag_bytes);
	tcase_add_test(tc, test_insert_strip_roundtrip);
	tcase_add_test(tc, test_insert_refused);
	tcase_add_test(tc, test_vnet_hdr_offsets);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
