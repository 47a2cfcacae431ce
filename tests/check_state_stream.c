/* The saved-VM file (docs/state.md): CRC-32C, the header, the records'
 * framing, order and versions, the RAM map, the vCPU / irqchip / PIT /
 * clock / CPUID encoders, and the saved configuration. Round trips first,
 * then every cut and every byte flip of a whole stream refused, then
 * hostile values with correct checksums refused field by field. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kestrel/config.h"
#include "kestrel/cpuid.h"
#include "kestrel/crc32c.h"
#include "kestrel/kvm_state.h"
#include "kestrel/migrate.h"
#include "kestrel/state_stream.h"

#include "check_util.h"

/* ---- CRC-32C ---- */

START_TEST(test_crc32c_vectors)
{
	static const uint8_t zeros[32], ones[32] = { [0 ... 31] = 0xff };
	uint8_t inc[32], buf[4096 + 16];

	/* RFC 3720 B.4's vectors and the classic check value. */
	for (int i = 0; i < 32; i++)
		inc[i] = (uint8_t)i;
	ck_assert_uint_eq(crc32c(0, "123456789", 9), 0xe3069283);
	ck_assert_uint_eq(crc32c(0, zeros, 32), 0x8a9136aa);
	ck_assert_uint_eq(crc32c(0, ones, 32), 0x62a8ab43);
	ck_assert_uint_eq(crc32c(0, inc, 32), 0x46dd794e);
	ck_assert_uint_eq(crc32c(0, "", 0), 0);
	/* Piecewise equals whole, at every split and alignment. */
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	for (size_t off = 0; off < 8; off++) {
		uint32_t whole = crc32c(0, buf + off, 4096);

		for (size_t cut = 0; cut <= 4096; cut += 509)
			ck_assert_uint_eq(crc32c(crc32c(0, buf + off, cut), buf + off + cut,
						 4096 - cut),
					  whole);
	}
}
END_TEST

/* ---- header ---- */

static struct stream_header sample_header(void)
{
	return (struct stream_header){ .version = STREAM_FORMAT_VERSION,
				       .records_off = 64,
				       .records_len = 1000,
				       .ram_off = 4096,
				       .ram_len = 1 << 20 };
}

START_TEST(test_header_round_trip)
{
	struct stream_header h = sample_header(), back;
	uint8_t buf[STREAM_HEADER_SIZE];
	char err[256];

	stream_header_encode(&h, buf);
	ck_assert_mem_eq(buf, STREAM_MAGIC, STREAM_MAGIC_LEN);
	ck_assert_int_eq(stream_header_decode(buf, 4096 + (1 << 20), &back, err, sizeof(err)), 0);
	ck_assert_uint_eq(back.records_len, 1000);
	ck_assert_uint_eq(back.ram_off, 4096);
	ck_assert_uint_eq(back.ram_len, 1 << 20);
	/* A file one byte short of its RAM area: truncated. */
	ck_assert_int_eq(stream_header_decode(buf, 4096 + (1 << 20) - 1, &back, err, sizeof(err)),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "truncated"));
}
END_TEST

START_TEST(test_header_every_flip)
{
	struct stream_header h = sample_header(), back;
	uint8_t good[STREAM_HEADER_SIZE], bad[STREAM_HEADER_SIZE];
	char err[256];

	stream_header_encode(&h, good);
	for (int at = 0; at < STREAM_HEADER_SIZE; at++)
		for (int bit = 0; bit < 8; bit++) {
			memcpy(bad, good, sizeof(bad));
			bad[at] ^= (uint8_t)(1u << bit);
			err[0] = '\0';
			ck_assert_msg(stream_header_decode(bad, 1ull << 40, &back, err,
							   sizeof(err)) == -EINVAL,
				      "flip of byte %d bit %d accepted", at, bit);
			ck_assert(err[0] && !strchr(err, '\n'));
		}
}
END_TEST

/* Headers with a right checksum and wrong contents. */
START_TEST(test_header_hostile)
{
	const struct stream_header bad[] = {
		{ 2, 64, 1000, 4096, 4096 },  /* a newer format */
		{ 0, 64, 1000, 4096, 4096 },  /* version 0 */
		{ 1, 128, 1000, 4096, 4096 }, /* records elsewhere */
		{ 1, 64, 8, 4096, 4096 },     /* records shorter than one header */
		{ 1, 64, STREAM_RECORDS_MAX + 1, 1ull << 30, 4096 },
		{ 1, 64, 8000, 4096, 4096 }, /* RAM overlaps the records */
		{ 1, 64, 1000, 4097, 4096 }, /* RAM not page-aligned */
		{ 1, 64, 1000, 4096, 4095 },
		{ 1, 64, 1000, 4096, UINT64_MAX - 4095 }, /* wraps */
	};
	struct stream_header back;
	uint8_t buf[STREAM_HEADER_SIZE];
	char err[256];

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		stream_header_encode(&bad[i], buf);
		ck_assert_msg(stream_header_decode(buf, UINT64_MAX, &back, err, sizeof(err)) ==
				      -EINVAL,
			      "hostile header %zu accepted", i);
	}
}
END_TEST

/* ---- records ---- */

static void put_record(struct state_buf *b, uint32_t tag, uint32_t version, const void *body,
		       size_t len)
{
	size_t mark = stream_record_begin(b, tag, version);

	state_put_bytes(b, body, len);
	stream_record_end(b, mark);
}

static void put_ram_record_v(struct state_buf *b, uint64_t ram_size, uint32_t version)
{
	struct stream_ram r;
	size_t mark;

	ck_assert_int_eq(stream_ram_init(&r, ram_size, ram_size, 0), 0);
	r.bitmap[0] = 0x5; /* pages 0 and 2 stored */
	r.present = 2;
	r.crc[0] = 0x12345678;
	mark = stream_record_begin(b, STREAM_RAM, version);
	stream_ram_put(b, &r);
	stream_record_end(b, mark);
	stream_ram_free(&r);
}

static void put_ram_record(struct state_buf *b, uint64_t ram_size)
{
	put_ram_record_v(b, ram_size, 1);
}

/* A whole records area with bodies that mean nothing: the framing alone. */
static struct state_buf sample_records(unsigned nvcpu)
{
	struct state_buf b = { 0 };

	put_record(&b, STREAM_KVER, 1, "v0", 2);
	put_record(&b, STREAM_CONF, 1, "{}", 2);
	put_record(&b, STREAM_CPUI, 1, "cpuid", 5);
	for (unsigned i = 0; i < nvcpu; i++)
		put_record(&b, STREAM_VCPU, 1, &i, sizeof(i));
	put_record(&b, STREAM_IRQC, 1, "irq", 3);
	put_record(&b, STREAM_PIT2, 1, "pit", 3);
	put_record(&b, STREAM_CLCK, 1, "clk", 3);
	put_record(&b, STREAM_DEVS, 1, "", 0);
	put_record(&b, STREAM_DISK, 1, "\0", 2);
	put_ram_record(&b, 1 << 20);
	put_record(&b, STREAM_END, 1, NULL, 0);
	ck_assert(!b.error);
	return b;
}

static int parse(const struct state_buf *b, struct stream_records *r, char *err, size_t errlen)
{
	err[0] = '\0';
	return stream_records_parse(b->data, b->len, STREAM_HEADER_SIZE, r, err, errlen);
}

START_TEST(test_records_round_trip)
{
	struct state_buf b = sample_records(3);
	struct stream_records r;
	struct stream_ram ram;
	char err[256];

	ck_assert_int_eq(parse(&b, &r, err, sizeof(err)), 0);
	ck_assert_uint_eq(r.nvcpu, 3);
	ck_assert_uint_eq(r.kver.len, 2);
	ck_assert_mem_eq(r.kver.body, "v0", 2);
	ck_assert_uint_eq(r.kver.off, STREAM_HEADER_SIZE);
	unsigned first;

	memcpy(&first, r.vcpu[2].body, sizeof(first)); /* the body need not be aligned */
	ck_assert_uint_eq(first, 2);
	ck_assert_int_eq(stream_ram_parse(&r.ram, &ram, err, sizeof(err)), 0);
	ck_assert_uint_eq(ram.pages, 256);
	ck_assert_uint_eq(ram.present, 2);
	ck_assert(stream_ram_present(&ram, 0) && !stream_ram_present(&ram, 1) &&
		  stream_ram_present(&ram, 2));
	ck_assert_uint_eq(ram.crc[0], 0x12345678);
	stream_ram_free(&ram);
	state_free(&b);
}
END_TEST

START_TEST(test_records_every_cut_and_flip)
{
	struct state_buf b = sample_records(2);
	struct stream_records r;
	char err[256];

	for (size_t n = 0; n < b.len; n++) {
		ck_assert_msg(stream_records_parse(b.data, n, 64, &r, err, sizeof(err)) == -EINVAL,
			      "%zu of %zu bytes accepted", n, b.len);
		ck_assert(err[0] && !strchr(err, '\n'));
	}
	for (size_t at = 0; at < b.len; at++) {
		b.data[at] ^= 0x01;
		ck_assert_msg(parse(&b, &r, err, sizeof(err)) == -EINVAL, "flip at %zu accepted",
			      at);
		b.data[at] ^= 0x81;
		ck_assert_msg(parse(&b, &r, err, sizeof(err)) == -EINVAL, "flip at %zu accepted",
			      at);
		b.data[at] ^= 0x80;
	}
	ck_assert_int_eq(parse(&b, &r, err, sizeof(err)), 0);
	state_free(&b);
}
END_TEST

/* Streams whose every checksum is right but whose shape is wrong. */
START_TEST(test_records_order_and_versions)
{
	static const uint32_t order[] = { STREAM_KVER, STREAM_CONF, STREAM_CPUI, STREAM_VCPU,
					  STREAM_IRQC, STREAM_PIT2, STREAM_CLCK, STREAM_DEVS,
					  STREAM_DISK, STREAM_RAM,  STREAM_END };
	struct stream_records r;
	char err[256];

	/* Each record left out, given twice, and given a newer version. */
	for (size_t skip = 0; skip < ARRAY_SIZE(order); skip++) {
		for (int mode = 0; mode < 4; mode++) {
			struct state_buf b = { 0 };

			for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
				uint32_t v = mode == 2 && i == skip   ? 2
					     : mode == 3 && i == skip ? 0
								      : 1;

				if (mode == 0 && i == skip)
					continue;
				if (order[i] == STREAM_RAM)
					put_ram_record_v(&b, 1 << 20, v);
				else
					put_record(&b, order[i], v, "x", 1);
				if (mode == 1 && i == skip && order[i] != STREAM_VCPU)
					put_record(&b, order[i], 1, "x", 1);
			}
			if (mode == 1 && order[skip] == STREAM_VCPU) {
				state_free(&b);
				continue; /* several VCPU records are the point */
			}
			ck_assert_msg(parse(&b, &r, err, sizeof(err)) == -EINVAL,
				      "record %zu, mode %d accepted", skip, mode);
			state_free(&b);
		}
	}
}
END_TEST

START_TEST(test_records_hostile_framing)
{
	struct stream_records r;
	char err[256];
	struct state_buf b;

	/* An unknown record where one is expected. */
	b = (struct state_buf){ 0 };
	put_record(&b, STREAM_KVER, 1, "v", 1);
	put_record(&b, 0x58585858, 1, "x", 1);
	ck_assert_int_eq(parse(&b, &r, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "XXXX"));
	state_free(&b);
	/* 65 vCPUs, data after END, a length running past the area. */
	b = sample_records(64);
	ck_assert_int_eq(parse(&b, &r, err, sizeof(err)), 0);
	state_free(&b);
	b = sample_records(65);
	ck_assert_int_eq(parse(&b, &r, err, sizeof(err)), -EINVAL);
	state_free(&b);
	b = sample_records(1);
	state_put_u8(&b, 0);
	ck_assert_int_eq(parse(&b, &r, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "after the END"));
	state_free(&b);
	b = (struct state_buf){ 0 };
	put_record(&b, STREAM_KVER, 1, "v", 1);
	b.data[8] = 0xff; /* length 0x...ff: past the end (checksum irrelevant) */
	b.data[11] = 0x7f;
	ck_assert_int_eq(parse(&b, &r, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "past the end"));
	state_free(&b);
}
END_TEST

START_TEST(test_ram_record_hostile)
{
	struct stream_record rec = { .tag = STREAM_RAM, .version = 1 };
	struct stream_ram r, out;
	struct state_buf b = { 0 };
	char err[256];

	/* 100 pages: the last bitmap word has 28 unused bits. */
	ck_assert_int_eq(stream_ram_init(&r, 100 * 4096, 100 * 4096, 0), 0);
	r.bitmap[1] = 1ull << 35; /* page 99 */
	r.present = 1;
	stream_ram_put(&b, &r);
	rec.body = b.data;
	rec.len = (uint32_t)b.len;
	ck_assert_uint_eq(b.len, stream_ram_body_size(100 * 4096));
	ck_assert_int_eq(stream_ram_parse(&rec, &out, err, sizeof(err)), 0);
	ck_assert(stream_ram_present(&out, 99));
	stream_ram_free(&out);
	/* Page 100 does not exist. */
	b.data[40 + 8 + 4] |= 0x10;
	ck_assert_int_eq(stream_ram_parse(&rec, &out, err, sizeof(err)), -EINVAL);
	b.data[40 + 8 + 4] &= ~0x10;
	/* The count does not match the bitmap. */
	b.data[32] = 2;
	ck_assert_int_eq(stream_ram_parse(&rec, &out, err, sizeof(err)), -EINVAL);
	b.data[32] = 1;
	/* RAM low + high != size; a page size other than 4096; a cut body. */
	b.data[8] ^= 1;
	ck_assert_int_eq(stream_ram_parse(&rec, &out, err, sizeof(err)), -EINVAL);
	b.data[8] ^= 1;
	b.data[25] = 0x20;
	ck_assert_int_eq(stream_ram_parse(&rec, &out, err, sizeof(err)), -EINVAL);
	b.data[25] = 0x10;
	rec.len--;
	ck_assert_int_eq(stream_ram_parse(&rec, &out, err, sizeof(err)), -EINVAL);
	rec.len++;
	ck_assert_int_eq(stream_ram_parse(&rec, &out, err, sizeof(err)), 0);
	stream_ram_free(&out);
	stream_ram_free(&r);
	state_free(&b);
}
END_TEST

/* ---- vCPU state ---- */

static void sample_vcpu(struct vcpu_state *s, bool xsave)
{
	uint8_t *p = (uint8_t *)&s->regs;

	memset(s, 0, sizeof(*s));
	s->index = 3;
	s->flags = VCPU_F_XCRS | VCPU_F_DEBUGREGS | (xsave ? VCPU_F_XSAVE : 0);
	s->tsc_khz = 2500000;
	s->mp_state = KVM_MP_STATE_HALTED;
	for (size_t i = 0; i < sizeof(s->regs); i++)
		p[i] = (uint8_t)(i * 13 + 1);
	s->sregs.cs = (struct kvm_segment){ .base = 0x1000,
					    .limit = 0xffff,
					    .selector = 0x10,
					    .type = 11,
					    .present = 1,
					    .s = 1,
					    .l = 1,
					    .g = 1 };
	s->sregs.tr =
		(struct kvm_segment){ .selector = 0x20, .limit = 0x67, .type = 11, .present = 1 };
	s->sregs.gdt = (struct kvm_dtable){ .base = 0x500, .limit = 39 };
	s->sregs.cr0 = 0x80050033;
	s->sregs.cr3 = 0x123000;
	s->sregs.cr8 = 7;
	s->sregs.efer = 0xd01;
	s->sregs.apic_base = 0xfee00900;
	s->sregs.interrupt_bitmap[3] = 1ull << 63;
	if (xsave) {
		s->xsave_len = 4096;
		s->xsave = malloc(4096);
		for (int i = 0; i < 4096; i++)
			s->xsave[i] = (uint8_t)(i ^ 0x5a);
	} else {
		s->fpu.fcw = 0x37f;
		s->fpu.mxcsr = 0x1f80;
		s->fpu.xmm[15][15] = 0xee;
	}
	s->xcrs.nr_xcrs = 1;
	s->xcrs.xcrs[0].value = 7;
	s->dregs.dr6 = 0xffff0ff0;
	s->dregs.dr7 = 0x400;
	for (int i = 0; i < VCPU_LAPIC_SIZE; i++)
		s->lapic[i] = (uint8_t)i;
	s->nmsrs = 3;
	s->msrs[0] = (struct kvm_msr_entry){ .index = 0x10, .data = 123456789 };
	s->msrs[1] = (struct kvm_msr_entry){ .index = 0x6e0, .data = 987654321 };
	s->msrs[2] = (struct kvm_msr_entry){ .index = 0x4b564d01, .data = 0x7001 };
	s->events.exception.nr = 14;
	s->events.exception.has_error_code = 1;
	s->events.exception.error_code = 2;
	s->events.interrupt.shadow = 1;
	s->events.nmi.masked = 1;
	s->events.flags = KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_NMI_PENDING;
}

static void put_vcpu(struct state_buf *b, const struct vcpu_state *s)
{
	*b = (struct state_buf){ 0 };
	vcpu_state_put(b, s);
	ck_assert(!b->error);
}

static int parse_vcpu(struct state_buf *b, struct vcpu_state *out)
{
	b->pos = 0;
	b->error = false;
	return vcpu_state_parse(b, out);
}

START_TEST(test_vcpu_round_trip)
{
	for (int xs = 0; xs < 2; xs++) {
		struct vcpu_state *s = malloc(sizeof(*s)), *o = malloc(sizeof(*o));
		struct state_buf b, again = { 0 };

		sample_vcpu(s, xs);
		put_vcpu(&b, s);
		ck_assert_int_eq(parse_vcpu(&b, o), 0);
		ck_assert_mem_eq(&o->regs, &s->regs, sizeof(s->regs));
		ck_assert_mem_eq(&o->sregs, &s->sregs, sizeof(s->sregs));
		ck_assert_mem_eq(o->lapic, s->lapic, VCPU_LAPIC_SIZE);
		ck_assert_uint_eq(o->nmsrs, 3);
		ck_assert_uint_eq(o->msrs[1].data, 987654321);
		ck_assert_mem_eq(&o->events, &s->events, sizeof(s->events));
		ck_assert_uint_eq(o->xsave_len, s->xsave_len);
		if (xs)
			ck_assert_mem_eq(o->xsave, s->xsave, 4096);
		else
			ck_assert_mem_eq(&o->fpu, &s->fpu, sizeof(s->fpu));
		vcpu_state_put(&again, o);
		ck_assert_uint_eq(again.len, b.len);
		ck_assert_mem_eq(again.data, b.data, b.len);
		vcpu_state_free(o); /* a parse starts from nothing: it would be lost */
		/* Every cut is refused. */
		for (size_t n = 0; n < b.len; n++) {
			struct state_buf cut = { .data = b.data, .len = n };

			ck_assert_msg(vcpu_state_parse(&cut, o) == -EINVAL, "cut at %zu accepted",
				      n);
		}
		vcpu_state_free(s);
		state_free(&again);
		state_free(&b);
		free(s);
		free(o);
	}
}
END_TEST

/* Each hostile value, in an otherwise good body. */
START_TEST(test_vcpu_hostile)
{
	struct vcpu_state *s = malloc(sizeof(*s)), *o = malloc(sizeof(*o));
	struct state_buf b;

	for (int k = 0; k < 14; k++) {
		sample_vcpu(s, k & 1);
		switch (k) {
		case 0: s->index = 64; break;
		case 1: s->mp_state = 5; break;
		case 2: s->sregs.cs.dpl = 4; break;
		case 3: s->sregs.ss.present = 2; break;
		case 4: s->sregs.tr.type = 16; break;
		case 5: s->sregs.cr8 = 16; break;
		case 6: s->nmsrs = VCPU_MSRS_MAX + 1; break;
		case 7: s->msrs[2].index = 0x10; break; /* not ascending */
		case 8: s->events.exception.nr = 32; break;
		case 9: s->events.flags |= 0x100; break;
		case 10: s->events.nmi.pending = 2; break;
		case 11: s->xcrs.nr_xcrs = VCPU_XCRS_MAX + 1; break;
		case 12: s->flags |= 0x80; break;
		case 13: s->events.interrupt.shadow = 4; break;
		}
		put_vcpu(&b, s);
		ck_assert_msg(parse_vcpu(&b, o) == -EINVAL, "hostile vCPU field %d accepted", k);
		state_free(&b);
		vcpu_state_free(s);
	}
	/* An XSAVE area that claims more than is there, or too little, or too much. */
	sample_vcpu(s, true);
	put_vcpu(&b, s);
	/* The length follows index, flags, kHz, MP state, 18 registers and the
	 * sregs (8 segments of 23 bytes, 2 tables of 10, 11 u64). */
	size_t at = 16 + 18 * 8 + 8 * 23 + 2 * 10 + 7 * 8 + 4 * 8;

	ck_assert_uint_eq(b.data[at + 1], 4096 >> 8);
	for (int k = 0; k < 3; k++) {
		uint32_t len = k == 0 ? 8192 : k == 1 ? 512 : VCPU_XSAVE_MAX + 64;

		memcpy(b.data + at, &len, 4);
		ck_assert_msg(parse_vcpu(&b, o) == -EINVAL, "XSAVE length %u accepted", len);
	}
	state_free(&b);
	vcpu_state_free(s);
	free(s);
	free(o);
}
END_TEST

/* ---- irqchip, PIT, clock ---- */

static void sample_vm(struct vm_kvm_state *s)
{
	memset(s, 0, sizeof(*s));
	s->pic[0] = (struct kvm_pic_state){
		.irr = 1, .imr = 0xfe, .irq_base = 0x20, .init4 = 1, .elcr_mask = 0xf8
	};
	s->pic[1] = (struct kvm_pic_state){ .irq_base = 0x28, .priority_add = 7, .init_state = 3 };
	s->ioapic.base_address = 0xfec00000;
	s->ioapic.irr = 1u << 23;
	s->ioapic.redirtbl[2].bits = 0x10030;
	s->pit.channels[0] = (struct kvm_pit_channel_state){
		.count = 0x10000, .rw_mode = 3, .mode = 2, .gate = 1
	};
	s->pit.channels[1].mode = 0xff;
	s->pit.flags = KVM_PIT_FLAGS_HPET_LEGACY;
	s->clock = 123456789012;
	s->realtime_ns = 1700000000000000000ull;
}

static int vm_round(const struct vm_kvm_state *s, struct vm_kvm_state *o)
{
	struct state_buf b[3] = { { 0 } };
	int ret;

	irqchip_state_put(&b[0], s);
	pit_state_put(&b[1], s);
	clock_state_put(&b[2], s);
	memset(o, 0, sizeof(*o));
	ret = irqchip_state_parse(&b[0], o) ?: pit_state_parse(&b[1], o) ?: clock_state_parse(&b[2], o);
	for (int i = 0; i < 3; i++)
		state_free(&b[i]);
	return ret;
}

START_TEST(test_vm_state_round_trip_and_hostile)
{
	struct vm_kvm_state s, o;

	sample_vm(&s);
	ck_assert_int_eq(vm_round(&s, &o), 0);
	ck_assert_mem_eq(&o.pic, &s.pic, sizeof(s.pic));
	ck_assert_mem_eq(&o.ioapic, &s.ioapic, sizeof(s.ioapic));
	ck_assert_mem_eq(&o.pit.channels[0], &s.pit.channels[0], sizeof(s.pit.channels[0]));
	ck_assert_uint_eq(o.clock, s.clock);
	for (int k = 0; k < 12; k++) {
		sample_vm(&s);
		switch (k) {
		case 0: s.pic[0].priority_add = 8; break;
		case 1: s.pic[1].irq_base = 0x21; break;
		case 2: s.pic[0].auto_eoi = 2; break;
		case 3: s.ioapic.base_address = 0xfec01000; break;
		case 4: s.ioapic.irr = 1u << 24; break;
		case 5: s.ioapic.ioregsel = 0x100; break;
		case 6: s.pit.channels[0].count = 0x10001; break;
		case 7: s.pit.channels[2].mode = 6; break;
		case 8: s.pit.channels[1].read_state = 5; break;
		case 9: s.pit.flags = 4; break;
		case 10: s.clock = 1ull << 62; break;
		case 11: s.pit.channels[0].gate = 2; break;
		}
		ck_assert_msg(vm_round(&s, &o) == -EINVAL, "hostile VM field %d accepted", k);
	}
}
END_TEST

/* ---- CPUID ---- */

static struct kvm_cpuid2 *cpuid_table(uint32_t ecx1)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 2 * sizeof(c->entries[0]));

	c->nent = 2;
	c->entries[0] = (struct kvm_cpuid_entry2){ .function = 1, .ecx = ecx1, .edx = 0x78bfbff };
	c->entries[1] = (struct kvm_cpuid_entry2){ .function = 7,
						   .index = 0,
						   .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
						   .ebx = 0x219c01ab };
	return c;
}

START_TEST(test_cpuid_round_trip_and_check)
{
	struct kvm_cpuid2 *a = cpuid_table(0x81202000), *host = cpuid_table(0x81202000), **back;
	const struct kvm_cpuid2 *tabs[2] = { a, a };
	struct state_buf b = { 0 };
	char err[256];

	cpuid_state_put(&b, tabs, 2);
	ck_assert_int_eq(cpuid_state_parse(&b, 2, &back), 0);
	ck_assert_mem_eq(back[1]->entries, a->entries, 2 * sizeof(a->entries[0]));
	free(back[0]);
	free(back[1]);
	free(back);
	b.pos = 0;
	ck_assert_int_eq(cpuid_state_parse(&b, 3, &back), -EINVAL); /* vCPU count */
	for (size_t n = 0; n < b.len; n++) {
		struct state_buf cut = { .data = b.data, .len = n };

		ck_assert_int_eq(cpuid_state_parse(&cut, 2, &back), -EINVAL);
	}
	/* The guest saw what the host has: fine; the hypervisor bit is ours. */
	ck_assert_int_eq(cpuid_state_check(a, host, err, sizeof(err)), 0);
	a->entries[0].ecx |= 1u << 31;
	ck_assert_int_eq(cpuid_state_check(a, host, err, sizeof(err)), 0);
	/* AES (leaf 1 ecx bit 25) the host lacks; an AVX2 bit of leaf 7. */
	a->entries[0].ecx |= 1u << 25;
	ck_assert_int_eq(cpuid_state_check(a, host, err, sizeof(err)), -ENOTSUP);
	ck_assert_str_eq(err, "the saved CPU has aes that this host's KVM cannot offer");
	a->entries[0].ecx &= ~(1u << 25);
	host->entries[1].ebx &= ~(1u << 5);
	ck_assert_int_eq(cpuid_state_check(a, host, err, sizeof(err)), -ENOTSUP);
	ck_assert_str_eq(err, "the saved CPU has avx2 that this host's KVM cannot offer");
	state_free(&b);
	free(a);
	free(host);
}
END_TEST

/* ---- the saved configuration ---- */

/* Defaults, then the JSON config text (named name in messages) into c. */
static void load_json(struct vm_config *c, const char *name, const char *text)
{
	char err[512];

	config_defaults(c);
	ck_assert_msg(config_load_json_text(c, name, text, strlen(text), err, sizeof(err)) == 0,
		      "%s: %s", text, err);
}

START_TEST(test_config_round_trip)
{
	struct vm_config c, back;
	static const char conf[] =
		"{\"kernel\": \"/k/vmlinux\", \"cmdline\": \"console=ttyS0 a=\\\"b c\\\"\", "
		"\"mem\": \"1G\", \"cpus\": 3, \"cpu\": \"x86-64-v2\", \"boot_entry\": 32, "
		"\"on_reboot\": \"exit\", "
		"\"disks\": [\"path=/d/a,,b.img,bus=scsi,readonly,cache=none,target=5\"], "
		"\"net\": [\"tap=tap7,vlan=9,queues=2\"]}";
	char *json;

	load_json(&c, "test", conf);
	json = config_to_json(&c);
	ck_assert_ptr_nonnull(json);
	load_json(&back, "saved", json);
	ck_assert_str_eq(back.kernel, "/k/vmlinux");
	ck_assert_str_eq(back.cmdline, c.cmdline);
	ck_assert_uint_eq(back.mem_size, 1ull << 30);
	ck_assert_uint_eq(back.cpus, 3);
	/* The target builds the same CPUID (docs/cpu.md). */
	ck_assert_ptr_eq(back.cpu, cpu_model_find("x86-64-v2"));
	ck_assert_ptr_nonnull(strstr(json, "\"cpu\":\"x86-64-v2\""));
	ck_assert_int_eq(back.boot_entry, BOOT_ENTRY_32);
	ck_assert_int_eq(back.on_reboot, ON_REBOOT_EXIT);
	ck_assert_uint_eq(back.ndisks, 1);
	ck_assert_str_eq(back.disks[0].path, "/d/a,b.img");
	ck_assert_int_eq(back.disks[0].target, 5);
	ck_assert(back.disks[0].blk.readonly);
	ck_assert_int_eq(back.disks[0].blk.cache, BLK_CACHE_NONE);
	ck_assert_uint_eq(back.nnets, 1);
	ck_assert_str_eq(back.nets[0].ifname, "tap7");
	ck_assert_uint_eq(back.nets[0].vlan, 9);
	ck_assert_uint_eq(back.nets[0].queues, 2);
	ck_assert_mem_eq(back.nets[0].mac, c.nets[0].mac, 6);
	free(json);
	config_free(&back);
	config_free(&c);
}
END_TEST

START_TEST(test_config_host_side_refused)
{
	static const char *const bad[] = {
		"{\"serial\": \"file:/etc/passwd\"}",
		"{\"control\": \"/tmp/x.sock\"}",
		"{\"timeout\": 5}",
		"{\"quiet\": true}",
		"{\"stats\": true}",
		"{\"mem\": \"2T\"}",
		"{\"cpus\": 65}",
		"{\"cpu\": \"pentium\"}",
		"{\"nonsense\": 1}",
		"{\"kernel\": 1}",
		"[1]",
		"{\"kernel\": \"a\"} x",
		"{\"kernel\": \"a\\u0000b\"}",
	};
	char err[512];

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct vm_config c;

		config_defaults(&c);
		err[0] = '\0';
		ck_assert_msg(config_load_json_text(&c, "saved", bad[i], strlen(bad[i]), err,
						    sizeof(err)) != 0,
			      "accepted: %s", bad[i]);
		ck_assert(err[0] && !strchr(err, '\n'));
		config_free(&c);
	}
}
END_TEST

/* ---- kestrel run --restore on crafted files (no KVM needed: refused
 * before a machine is built) ---- */

static char tmpdir[64];

static void write_bytes(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(p, 1, n, f), n);
	fclose(f);
}

/* A complete file around a records area: header, records, RAM of ram bytes. */
static void write_stream(const char *path, const struct state_buf *recs, uint64_t ram)
{
	struct stream_header h = { .version = 1,
				   .records_off = 64,
				   .records_len = recs->len,
				   .ram_off = ALIGN_UP(64 + recs->len, 4096),
				   .ram_len = ram };
	uint8_t hdr[64];
	FILE *f = fopen(path, "wb");

	stream_header_encode(&h, hdr);
	ck_assert_ptr_nonnull(f);
	fwrite(hdr, 1, 64, f);
	fwrite(recs->data, 1, recs->len, f);
	ck_assert_int_eq(ftruncate(fileno(f), (off_t)(h.ram_off + ram)), 0);
	fclose(f);
}

static int run_restore(const char *file, char *err, size_t errlen)
{
	char cmd[512];
	FILE *p;
	size_t n;
	int st;

	snprintf(cmd, sizeof(cmd),
		 "%s run --restore %s --control none --timeout 5s 2>&1 </dev/null", KESTREL_BIN,
		 file);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	n = fread(err, 1, errlen - 1, p);
	err[n] = '\0';
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Records around a configuration text, 16 MiB of RAM. */
static struct state_buf records_with_conf(const char *conf)
{
	struct state_buf b = { 0 };
	size_t mark;

	put_record(&b, STREAM_KVER, 1, "\1\0\0\0v", 5);
	mark = stream_record_begin(&b, STREAM_CONF, 1);
	stream_put_str(&b, conf);
	stream_record_end(&b, mark);
	put_record(&b, STREAM_CPUI, 1, "x", 1);
	put_record(&b, STREAM_VCPU, 1, "x", 1);
	put_record(&b, STREAM_IRQC, 1, "x", 1);
	put_record(&b, STREAM_PIT2, 1, "x", 1);
	put_record(&b, STREAM_CLCK, 1, "x", 1);
	put_record(&b, STREAM_DEVS, 1, "", 0);
	put_record(&b, STREAM_DISK, 1, "\0", 2);
	put_ram_record(&b, 16 << 20);
	put_record(&b, STREAM_END, 1, NULL, 0);
	return b;
}

START_TEST(test_restore_refuses_crafted_files)
{
	static const struct {
		const char *conf, *want;
	} cases[] = {
		{ "{\"kernel\": \"/nonexistent\", \"mem\": 16, \"cpus\": 1, \"serial\": \"file:/tmp/x\"}",
		  "\"serial\" is not part of a saved configuration" },
		{ "{\"kernel\": \"/nonexistent\", \"mem\": 16, \"cpus\": 2}", "holds 1 and" },
		{ "{\"kernel\": \"/nonexistent\", \"mem\": 32, \"cpus\": 1}", "holds 1 and" },
		{ "{\"kernel\": \"/nonexistent\", \"mem\": 16, \"cpus\": 1, \"disks\": "
		  "[\"path=/nonexistent.img\"]}",
		  "nonexistent.img" },
		{ "not json", "JSON syntax error" },
	};
	char path[128], err[1024];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct state_buf b = records_with_conf(cases[i].conf);

		snprintf(path, sizeof(path), "%s/crafted%zu", tmpdir, i);
		write_stream(path, &b, 16 << 20);
		ck_assert_int_eq(run_restore(path, err, sizeof(err)), 2);
		ck_assert_msg(strstr(err, cases[i].want) &&
				      strchr(err, '\n') == err + strlen(err) - 1,
			      "case %zu: %s", i, err);
		state_free(&b);
	}
	/* Not a state at all, and an empty file. */
	snprintf(path, sizeof(path), "%s/text", tmpdir);
	write_bytes(path, "hello, world\n", 13);
	ck_assert_int_eq(run_restore(path, err, sizeof(err)), 2);
	ck_assert_ptr_nonnull(strstr(err, "not a kestrel saved-state file"));
	write_bytes(path, "", 0);
	ck_assert_int_eq(run_restore(path, err, sizeof(err)), 2);
	ck_assert_ptr_nonnull(strstr(err, "not a kestrel saved-state file"));
}
END_TEST

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_state_stream.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
	rm_tree(tmpdir);
}

/* A save carries every machine; a snapshot refuses a writable IDE disk
 * (it would not get a differencing child) with its line, not an IDE CD. */
START_TEST(test_config_supported)
{
	struct config_disk ide = { .path = "/vm/ide.img", .bus = CONFIG_BUS_IDE };
	struct config_disk cd = { .path = "/vm/cd.iso",
				  .bus = CONFIG_BUS_IDE,
				  .media = CONFIG_MEDIA_CDROM };
	struct config_disk scsi = { .path = "/vm/scsi.vhd", .bus = CONFIG_BUS_SCSI };
	struct config_net tulip = { .ifname = "tap7", .model = CONFIG_NET_TULIP };
	struct vm_config c = { .disks = &ide,
			       .ndisks = 1,
			       .nets = &tulip,
			       .nnets = 1,
			       .vga = CONFIG_VGA_STD,
			       .firmware = "/bios.bin" };
	char err[256] = "";

	ck_assert_int_eq(migrate_config_supported(&c, err, sizeof(err)), 0);
	ck_assert_int_eq(migrate_snapshot_supported(&c, err, sizeof(err)), -ENOTSUP);
	ck_assert_msg(strstr(err, "/vm/ide.img is an IDE disk"), "%s", err);
	c.disks = &cd;
	ck_assert_int_eq(migrate_snapshot_supported(&c, err, sizeof(err)), 0);
	c.disks = &scsi;
	ck_assert_int_eq(migrate_snapshot_supported(&c, err, sizeof(err)), 0);
}
END_TEST

/* A firmware-booted machine with IDE drives (an empty CD among them), a
 * 21140 and the VGA comes back as the same machine. */
START_TEST(test_config_round_trip_firmware)
{
	struct vm_config c, back;
	static const char conf[] =
		"{\"firmware\": \"/fw/bios.bin\", \"boot\": \"cdrom,disk,menu=on\", \"mem\": 512, "
		"\"disks\": [\"path=/d/ide.vhd,bus=ide,unit=1,format=vhd\", "
		"\"bus=ide,unit=2,media=cdrom\", \"path=/d/s.img,bus=scsi,target=3,format=raw\"], "
		"\"net\": [\"tap=tap3,model=tulip,vlan=4\"], \"vga\": \"std,mem=32M,rom=none\"}";
	char *json;

	load_json(&c, "test", conf);
	c.vga_mem = 32ull << 20; /* what config_vga_validate leaves */
	json = config_to_json(&c);
	ck_assert_ptr_nonnull(json);
	ck_assert_msg(!strstr(json, "cmdline") && !strstr(json, "kernel"), "%s", json);
	load_json(&back, "saved", json);
	ck_assert_ptr_null(back.kernel);
	ck_assert_str_eq(back.firmware, "/fw/bios.bin");
	ck_assert_uint_eq(back.boot.n, 2);
	ck_assert_int_eq(back.boot.order[0], CONFIG_BOOT_CDROM);
	ck_assert(back.boot.menu);
	ck_assert_uint_eq(back.ndisks, 3);
	ck_assert_int_eq(back.disks[0].bus, CONFIG_BUS_IDE);
	ck_assert_int_eq(back.disks[0].unit, 1);
	ck_assert_int_eq(back.disks[0].media, CONFIG_MEDIA_DISK);
	ck_assert_int_eq(back.disks[0].blk.format, BLK_FMT_VHD);
	ck_assert_ptr_null(back.disks[1].path);
	ck_assert_int_eq(back.disks[1].unit, 2);
	ck_assert_int_eq(back.disks[1].media, CONFIG_MEDIA_CDROM);
	ck_assert_int_eq(back.disks[2].bus, CONFIG_BUS_SCSI);
	ck_assert_int_eq(back.disks[2].blk.format, BLK_FMT_RAW);
	ck_assert_uint_eq(back.nnets, 1);
	ck_assert_int_eq(back.nets[0].model, CONFIG_NET_TULIP);
	ck_assert_uint_eq(back.nets[0].vlan, 4);
	ck_assert_int_eq(back.vga, CONFIG_VGA_STD);
	ck_assert_uint_eq(back.vga_mem, 32ull << 20);
	ck_assert_str_eq(back.vga_rom, "none");
	free(json);
	config_free(&back);
	config_free(&c);
}
END_TEST

static Suite *state_stream_suite(void)
{
	Suite *s = suite_create("state_stream");

	ADD_TCASE(s, "format", NULL, NULL, 0, test_crc32c_vectors, test_header_round_trip,
		  test_header_every_flip, test_header_hostile, test_records_round_trip,
		  test_records_every_cut_and_flip, test_records_order_and_versions,
		  test_records_hostile_framing, test_ram_record_hostile);
	ADD_TCASE(s, "kvm_state", NULL, NULL, 0, test_vcpu_round_trip, test_vcpu_hostile,
		  test_vm_state_round_trip_and_hostile, test_cpuid_round_trip_and_check);
	ADD_TCASE(s, "config", NULL, NULL, 0, test_config_round_trip,
		  test_config_round_trip_firmware, test_config_host_side_refused,
		  test_config_supported);
	ADD_TCASE(s, "restore", setup, teardown, 60, test_restore_refuses_crafted_files);
	return s;
}

int main(void)
{
	return run_suite(state_stream_suite());
}
