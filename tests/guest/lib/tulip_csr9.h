/* What Linux's tulip driver does through the 21140's CSR9 to read the
 * serial ROM (drivers/net/ethernet/dec/tulip/eeprom.c, tulip_read_eeprom)
 * and to talk to the MII PHY (media.c, tulip_mdio_read/write), pin by pin,
 * for the payload (tests/guest/tulip.c) and the unit tests
 * (tests/check_tulip.c): both check the device against the driver's own
 * sequence. Header-only; the includer defines CSR9_READ() and
 * CSR9_WRITE(v) first. Also the IEEE 802.3 CRC-32 the ROM's checksum and
 * the hash filter use. */
#ifndef TULIP_CSR9_H
#define TULIP_CSR9_H

#include <stdint.h>

#define CSR9_EE_ENB (0x4800u | 1) /* SR, RD, chip select */
#define CSR9_EE_CLK 0x02u
#define CSR9_EE_DI  0x04u
#define CSR9_EE_DO  0x08u
#define CSR9_MDC    0x10000u
#define CSR9_MDO    0x20000u
#define CSR9_MII_IN 0x40000u
#define CSR9_MDI    0x80000u

/* Returns the command phase's bits too: Linux sizes the ROM from them. */
static inline uint32_t csr9_eeprom_read(unsigned location, unsigned addr_len)
{
	uint32_t cmd = location | (6u << addr_len), ret = 0;

	CSR9_WRITE(CSR9_EE_ENB & ~1u);
	CSR9_WRITE(CSR9_EE_ENB);
	for (int i = 4 + (int)addr_len; i >= 0; i--) {
		uint32_t d = (cmd & (1u << i)) ? CSR9_EE_DI : 0;

		CSR9_WRITE(CSR9_EE_ENB | d);
		CSR9_WRITE(CSR9_EE_ENB | d | CSR9_EE_CLK);
		ret = (ret << 1) | ((CSR9_READ() & CSR9_EE_DO) ? 1 : 0);
	}
	CSR9_WRITE(CSR9_EE_ENB);
	for (int i = 16; i > 0; i--) {
		CSR9_WRITE(CSR9_EE_ENB | CSR9_EE_CLK);
		ret = (ret << 1) | ((CSR9_READ() & CSR9_EE_DO) ? 1 : 0);
		CSR9_WRITE(CSR9_EE_ENB);
	}
	CSR9_WRITE(CSR9_EE_ENB & ~1u);
	return ret;
}

/* n bits of v, most significant first, clocked out on MDIO. */
static inline void csr9_mdio_out(uint32_t v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		uint32_t d = (v & (1u << i)) ? CSR9_MDO : 0;

		CSR9_WRITE(d);
		CSR9_WRITE(d | CSR9_MDC);
	}
}

static inline unsigned csr9_mdio_read(unsigned phy, unsigned reg)
{
	uint32_t ret = 0;

	csr9_mdio_out(0xffffffffu, 32); /* preamble, and one more one */
	csr9_mdio_out(1, 1);
	csr9_mdio_out((0xf6u << 10) | (phy << 5) | reg, 16);
	for (int i = 19; i > 0; i--) { /* turnaround, data, idle */
		CSR9_WRITE(CSR9_MII_IN);
		ret = (ret << 1) | ((CSR9_READ() & CSR9_MDI) ? 1 : 0);
		CSR9_WRITE(CSR9_MII_IN | CSR9_MDC);
	}
	return (ret >> 1) & 0xffff;
}

static inline void csr9_mdio_write(unsigned phy, unsigned reg, unsigned val)
{
	csr9_mdio_out(0xffffffffu, 32);
	csr9_mdio_out(1, 1);
	csr9_mdio_out((0x5002u << 16) | (phy << 23) | (reg << 18) | (val & 0xffff), 32);
	for (int i = 2; i > 0; i--) {
		CSR9_WRITE(CSR9_MII_IN);
		CSR9_WRITE(CSR9_MII_IN | CSR9_MDC);
	}
}

/* IEEE 802.3 CRC-32, bit-reflected, preset ones, not inverted at the end
 * (Linux's ether_crc_le). */
static inline uint32_t crc32_le(const uint8_t *p, unsigned n)
{
	uint32_t c = 0xffffffffu;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
	}
	return c;
}

#endif
