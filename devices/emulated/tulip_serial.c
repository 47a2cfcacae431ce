/* The two serial devices a driver reaches through the 21140A's CSR9 by
 * toggling pins: the 93C46 serial ROM (64 16-bit words) holding the MAC
 * address and the media table, and the MII PHY's management interface
 * (MDC/MDIO) with the link status. Both are fed one CSR9 write at a time
 * and act on the clock's rising edges, as the chips do.
 *
 * The ROM follows DEC's "Digital Semiconductor 21X4 Serial ROM Format"
 * version 4, the layout Linux's tulip driver (eeprom.c) and the Windows
 * 21x4 drivers parse: subsystem IDs, the ID block CRC, one controller
 * with the MAC address at byte 20 and its info leaf at byte 30. The leaf
 * lists two media blocks: a 21140 MII PHY block (the PHY below) and a
 * compact 100BaseTX block whose link sense is general-purpose pin 6
 * (CSR12), and names 100BaseTX the default, so a driver watches the link
 * on that pin (Linux: every 2 s) and still finds the PHY when it scans
 * the MII. The ROM is read-only: write and erase commands are taken and
 * ignored. */
#include <string.h>

#include "tulip_priv.h"

/* ---- CRC-32 (IEEE 802.3, bit-reflected), for the ROM and hash filter ---- */

uint32_t tulip_crc32(const uint8_t *p, size_t n)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int b = 0; b < 8; b++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
	}
	return crc;
}

/* ---- the ROM's contents ---- */

#define SROM_SUBSYS_VENDOR 0x1af4
#define SROM_SUBSYS_ID	   0x1100
#define SROM_ID_CRC	   16
#define SROM_VERSION	   18
#define SROM_CONTROLLERS   19
#define SROM_MAC	   20
#define SROM_LEAF_PTR	   27
#define SROM_LEAF	   30
#define SROM_CRC	   126
#define SROM_FORMAT	   4
#define MEDIA_100BASETX	   0x0003
#define GP_DIRECTION	   0x3f /* pins 0-5 out, 6 (link) and 7 in */

/* ID block CRC (21X4 SROM format 4.1): CRC-8 (x^8 + x^2 + x + 1, preset
 * ones) over bytes 0-15 and 17, each 16-bit word high byte first. */
static uint8_t srom_id_crc(const uint8_t *b)
{
	uint8_t crc = 0xff;

	for (unsigned i = 0; i < 17; i++) {
		unsigned at = i == 16 ? 17 : (i ^ 1);

		for (int bit = 7; bit >= 0; bit--) {
			bool in = ((b[at] >> bit) & 1) ^ (crc >> 7);

			crc = (uint8_t)(crc << 1);
			if (in)
				crc ^= 0x07;
		}
	}
	return crc;
}

static void put16(uint8_t *b, uint16_t v)
{
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
}

/* The info leaf (format 4.2, 21140): connection type, the GP port's
 * directions, the block count, then the blocks. */
static unsigned srom_leaf(uint8_t *p)
{
	static const uint8_t mii[] = {
		0x8c, 0x01, /* extended block, 12 bytes, type 1: 21140 MII PHY */
		0x00,	    /* PHY number (the first one found) */
		0x00, 0x00, /* no GP setup and no reset sequence */
		0x00, 0x78, /* media capabilities: 10/100, half and full duplex */
		0xe0, 0x01, /* autonegotiation advertisement */
		0x00, 0x50, /* full-duplex bit map */
		0x00, 0x18, /* transmit-threshold bit map */
	};
	/* Compact block: media, GP data, command: PS, PCS and SCR on (the
	 * 100 Mb/s symbol port), link on GP pin 6 high, sense valid. */
	static const uint8_t tx100[] = { MEDIA_100BASETX, 0x00, 0x61 | TULIP_GP_LINK << 1, 0x00 };
	unsigned n = 0;

	put16(p, MEDIA_100BASETX);
	n += 2;
	p[n++] = GP_DIRECTION;
	p[n++] = 2;
	memcpy(p + n, mii, sizeof(mii));
	n += sizeof(mii);
	memcpy(p + n, tx100, sizeof(tx100));
	return n + sizeof(tx100);
}

void tulip_srom_build(struct tulip_srom *s, const uint8_t *mac)
{
	uint8_t b[128] = { 0 };

	put16(b, SROM_SUBSYS_VENDOR);
	put16(b + 2, SROM_SUBSYS_ID);
	b[SROM_VERSION] = SROM_FORMAT;
	b[SROM_CONTROLLERS] = 1;
	memcpy(b + SROM_MAC, mac, NET_ETH_ALEN);
	put16(b + SROM_LEAF_PTR, SROM_LEAF);
	srom_leaf(b + SROM_LEAF);
	b[SROM_ID_CRC] = srom_id_crc(b);
	/* Whole-ROM CRC (format 4.1): the low 16 bits of the CRC-32 of bytes
	 * 0-125. */
	put16(b + SROM_CRC, (uint16_t)~tulip_crc32(b, SROM_CRC));
	for (unsigned i = 0; i < ARRAY_SIZE(s->words); i++)
		s->words[i] = (uint16_t)(b[2 * i] | b[2 * i + 1] << 8);
	tulip_srom_reset(s);
}

/* ---- the 93C46 on CSR9 (HRM 7.2: SR selects it; CS bit 0, SK bit 1, DI
 * bit 2, DO read back in bit 3). Commands: a start bit, a 2-bit opcode, a
 * 6-bit address; READ (10) puts a dummy 0 on DO, then the word MSB first,
 * and goes on with the next word while CS stays high. DO floats high when
 * the chip does not drive it, which is how Linux tells a 93C46 from a
 * 93C66 (tulip_read_eeprom of location 0xff with 8 address bits). ---- */

#define SROM_CMD_BITS 8
#define SROM_OP_READ  2

void tulip_srom_reset(struct tulip_srom *s)
{
	s->phase = SROM_IDLE;
	s->sk = false;
	s->dout = true;
	s->nbits = 0;
	s->cmd = 0;
	s->left = 0;
}

static void srom_command(struct tulip_srom *s)
{
	if (s->cmd >> 6 != SROM_OP_READ) {
		s->phase = SROM_SKIP;
		return;
	}
	s->phase = SROM_READ;
	s->addr = s->cmd & 0x3f;
	s->shift = s->words[s->addr];
	s->left = 16;
	s->dout = false;
}

static void srom_shift_out(struct tulip_srom *s)
{
	if (!s->left) {
		s->addr = (s->addr + 1) & 0x3f;
		s->shift = s->words[s->addr];
		s->left = 16;
	}
	s->dout = s->shift >> 15;
	s->shift = (uint16_t)(s->shift << 1);
	s->left--;
}

void tulip_srom_pins(struct tulip_srom *s, uint32_t csr9)
{
	bool sk = csr9 & CSR9_SR_SK, di = csr9 & CSR9_SR_DI, rise = sk && !s->sk;

	s->sk = sk;
	if (!(csr9 & CSR9_SR_CS)) {
		tulip_srom_reset(s);
		return;
	}
	if (!rise)
		return;
	switch (s->phase) {
	case SROM_IDLE:
		if (di) { /* the start bit */
			s->phase = SROM_CMD;
			s->nbits = 0;
			s->cmd = 0;
		}
		break;
	case SROM_CMD:
		s->cmd = s->cmd << 1 | di;
		if (++s->nbits == SROM_CMD_BITS)
			srom_command(s);
		break;
	case SROM_READ: srom_shift_out(s); break;
	case SROM_SKIP: break;
	}
}

/* ---- the MII PHY (IEEE 802.3 clause 22) on CSR9 (HRM 3.2.2.10: MDC bit
 * 16, MDO bit 17, MII bit 18 set while the PHY drives MDIO, MDI bit 19).
 * A frame: at least 32 ones of preamble, ST 01, OP (10 read, 01 write),
 * PHYAD, REGAD, a turnaround, 16 data bits; the PHY samples MDIO and
 * changes what it drives at MDC's rising edge. Only address
 * TULIP_PHY_ADDR answers; other addresses read all ones (nobody drives
 * the line). ---- */

#define MII_BMCR	0
#define MII_BMSR	1
#define MII_PHYID1	2
#define MII_PHYID2	3
#define MII_ANAR	4
#define MII_ANLPAR	5
#define MII_ANER	6
#define BMCR_RESET	0x8000
#define BMCR_ANRESTART	0x0200
#define BMCR_ANENABLE	0x1000
#define BMCR_WMASK	0x7d80
#define BMCR_DEFAULT	0x3100 /* 100 Mb/s, autonegotiation, full duplex */
#define BMSR_ABILITIES	0x7809 /* 10/100 half and full, AN able, extended regs */
#define BMSR_ANCOMPLETE 0x0020
#define BMSR_LSTATUS	0x0004
#define ANAR_DEFAULT	0x01e1
#define ANLPAR_UP	0x45e1 /* ack, pause, 10/100 half and full */
/* National DP83840A's identifier, the PHY DEC's 21140A boards carried. */
#define PHY_ID1		0x2000
#define PHY_ID2		0x5c01
#define MII_CMD_BITS	13 /* ST's 1, OP, PHYAD, REGAD */
#define MII_OP_READ	2
#define MII_OP_WRITE	1

static void mii_regs_reset(struct tulip_mii *m)
{
	memset(m->reg, 0, sizeof(m->reg));
	m->reg[MII_BMCR] = BMCR_DEFAULT;
	m->reg[MII_ANAR] = ANAR_DEFAULT;
	m->link_lost = false;
}

void tulip_mii_reset(struct tulip_mii *m)
{
	mii_regs_reset(m);
	m->phase = MII_PREAMBLE;
	m->mdc = false;
	m->mdi = true;
	m->ones = m->nbits = 0;
	m->word = 0;
}

bool tulip_mii_regs_valid(const struct tulip_mii *m)
{
	return !(m->reg[MII_BMCR] & ~(BMCR_WMASK & ~BMCR_ANRESTART)) &&
	       (m->reg[MII_ANAR] & ~0x3fe0) == 0x0001;
}

void tulip_mii_link(struct tulip_mii *m, bool up)
{
	if (!up)
		m->link_lost = true;
}

static uint16_t mii_read(struct tulip_mii *m, unsigned reg, bool link_up)
{
	bool up = link_up && !m->link_lost;
	uint16_t v;

	switch (reg) {
	case MII_BMSR:
		v = BMSR_ABILITIES;
		if (up)
			v |= BMSR_LSTATUS;
		if (up && (m->reg[MII_BMCR] & BMCR_ANENABLE))
			v |= BMSR_ANCOMPLETE;
		/* 22.2.4.2.13: link status latches low until read. */
		m->link_lost = false;
		return v;
	case MII_PHYID1: return PHY_ID1;
	case MII_PHYID2: return PHY_ID2;
	case MII_ANLPAR: return link_up ? ANLPAR_UP : 0;
	case MII_ANER: return link_up ? 1 : 0;
	}
	return m->reg[reg];
}

static void mii_write(struct tulip_mii *m, unsigned reg, uint16_t v)
{
	if (reg == MII_BMCR) {
		if (v & BMCR_RESET) {
			mii_regs_reset(m); /* 22.2.4.1.1: and the bit clears itself */
			return;
		}
		/* Restart completes at once: the partner is always there. */
		m->reg[MII_BMCR] = v & BMCR_WMASK & (uint16_t)~BMCR_ANRESTART;
	} else if (reg == MII_ANAR) {
		m->reg[MII_ANAR] = (v & 0x3fe0) | 0x0001;
	}
}

/* The 13 bits after the preamble's closing 0 are in: start the data phase. */
static void mii_command(struct tulip_mii *m, bool link_up)
{
	unsigned op = (m->word >> 10) & 3, phy = (m->word >> 5) & 0x1f, reg = m->word & 0x1f;
	bool ours = phy == TULIP_PHY_ADDR;

	m->ones = 0;
	if (!(m->word & 0x1000) || (op != MII_OP_READ && op != MII_OP_WRITE)) {
		m->phase = MII_PREAMBLE;
		return;
	}
	if (op == MII_OP_WRITE) {
		m->phase = MII_WRITE;
		m->nbits = 0;
		m->word = (uint32_t)(ours ? reg : 0x100 | reg) << 18;
		return;
	}
	/* The turnaround's first bit floats, its second is 0, then data. */
	m->phase = MII_READ;
	m->nbits = 17;
	m->word = ours ? mii_read(m, reg, link_up) : 0x1ffff;
	m->mdi = true;
}

static void mii_write_bit(struct tulip_mii *m, bool bit)
{
	/* word: bit 26 "not ours", 22:18 the register, 17:0 TA and data. */
	m->word |= (uint32_t)bit << (17 - m->nbits);
	if (++m->nbits < 18)
		return;
	if (!(m->word & (0x100u << 18)))
		mii_write(m, (m->word >> 18) & 0x1f, (uint16_t)m->word);
	m->phase = MII_PREAMBLE;
	m->ones = 0;
}

void tulip_mii_pins(struct tulip_mii *m, uint32_t csr9, bool link_up)
{
	bool rise = (csr9 & CSR9_MDC) && !m->mdc, bit = csr9 & CSR9_MDO;
	bool driving = !(csr9 & CSR9_MII);

	m->mdc = csr9 & CSR9_MDC;
	if (!rise)
		return;
	switch (m->phase) {
	case MII_PREAMBLE:
		if (!driving)
			break;
		if (bit) {
			m->ones = MIN(m->ones + 1, 255u);
		} else if (m->ones >= 32) {
			m->phase = MII_CMD;
			m->nbits = 0;
			m->word = 0;
		} else {
			m->ones = 0;
		}
		break;
	case MII_CMD:
		m->word = m->word << 1 | bit;
		if (++m->nbits == MII_CMD_BITS)
			mii_command(m, link_up);
		break;
	case MII_READ:
		if (m->nbits) {
			m->mdi = (m->word >> 16) & 1;
			m->word <<= 1;
			m->nbits--;
		} else {
			m->mdi = true;
			m->phase = MII_PREAMBLE;
		}
		break;
	case MII_WRITE: mii_write_bit(m, bit); break;
	}
}
