/* The emulated DEC 21140A "Tulip" Ethernet controller, shared between its
 * files (devices/emulated/tulip.c: registers, PCI function, I/O thread,
 * state; tulip_ring.c: the descriptor lists, setup frames and the receive
 * filter; tulip_serial.c: the serial ROM and the MII PHY behind CSR9).
 * Register and bit names are the 21140A Hardware Reference Manual's
 * (Intel order number 278074, "21140A HRM" below). */
#ifndef KESTREL_TULIP_PRIV_H
#define KESTREL_TULIP_PRIV_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>

#include "kestrel/device.h"
#include "kestrel/net.h"
#include "kestrel/pci.h"
#include "kestrel/tulip.h"

struct vm;

/* CSRs sit every 8 bytes of a 128-byte I/O BAR (CBIO) and a memory BAR
 * (CBMA) (21140A HRM 3.2). */
#define TULIP_CSR_SPACE 128
#define TULIP_NCSR	16

/* CSR0 bus mode (HRM 3.2.2.1). */
#define CSR0_SWR       0x00000001u
#define CSR0_DSL_SHIFT 2
#define CSR0_DSL_MASK  0x1fu
#define CSR0_TAP_SHIFT 17
#define CSR0_TAP_MASK  0x7u
#define CSR0_DBO       0x00100000u
#define CSR0_WMASK     0x01befffeu /* BAR DSL BLE PBL CAL TAP DBO RME RLE WIE */
#define CSR0_RESET     0xfe000000u /* bits 31:25 reserved, read as ones */

/* CSR5 status (HRM 3.2.2.6). */
#define CSR5_TI	    0x00000001u
#define CSR5_TPS    0x00000002u
#define CSR5_TU	    0x00000004u
#define CSR5_TJT    0x00000008u
#define CSR5_UNF    0x00000020u
#define CSR5_RI	    0x00000040u
#define CSR5_RU	    0x00000080u
#define CSR5_RPS    0x00000100u
#define CSR5_RWT    0x00000200u
#define CSR5_ETI    0x00000400u
#define CSR5_GTE    0x00000800u
#define CSR5_FBE    0x00002000u
#define CSR5_ERI    0x00004000u
#define CSR5_AIS    0x00008000u
#define CSR5_NIS    0x00010000u
#define CSR5_NORMAL (CSR5_TI | CSR5_TU | CSR5_RI | CSR5_ERI)
#define CSR5_ABNORMAL                                                                           \
	(CSR5_TPS | CSR5_TJT | CSR5_UNF | CSR5_RU | CSR5_RPS | CSR5_RWT | CSR5_ETI | CSR5_GTE | \
	 CSR5_FBE)
#define CSR5_SOURCES	     (CSR5_NORMAL | CSR5_ABNORMAL)
#define CSR5_RS_SHIFT	     17
#define CSR5_TS_SHIFT	     20
#define CSR5_EB_SHIFT	     23
#define CSR5_EB_MASTER_ABORT 1u

/* Receive process states (CSR5<19:17>) and transmit process states
 * (CSR5<22:20>) the model goes through. */
enum { RS_STOPPED = 0, RS_WAITING = 3, RS_SUSPENDED = 4 };
enum { TS_STOPPED = 0, TS_FETCHING = 1, TS_SUSPENDED = 6 };

/* CSR6 operating mode (HRM 3.2.2.7). HP, HO and IF are read-only: they
 * show the filtering mode the last setup frame chose. */
#define CSR6_HP	      0x00000001u
#define CSR6_SR	      0x00000002u
#define CSR6_HO	      0x00000004u
#define CSR6_PB	      0x00000008u
#define CSR6_IF	      0x00000010u
#define CSR6_PR	      0x00000040u
#define CSR6_PM	      0x00000080u
#define CSR6_FD	      0x00000200u
#define CSR6_OM_SHIFT 10
#define CSR6_OM_MASK  0x3u
#define CSR6_ST	      0x00002000u
#define CSR6_PS	      0x00040000u
#define CSR6_MBO      0x02000000u
#define CSR6_RA	      0x40000000u
#define CSR6_RO	      (CSR6_HP | CSR6_HO | CSR6_IF)
#define CSR6_WMASK    0xc1eefeeau /* all but reserved bits and the read-only ones */
#define CSR6_RESET    CSR6_MBO

#define CSR7_WMASK 0x0001efefu /* the CSR5 sources and the two summaries */

/* CSR8 missed frames (HRM 3.2.2.9): a 16-bit counter and its overflow bit. */
#define CSR8_MFO 0x00010000u

/* CSR9 serial ROM and MII management (HRM 3.2.2.10). */
#define CSR9_SR_CS 0x00000001u
#define CSR9_SR_SK 0x00000002u
#define CSR9_SR_DI 0x00000004u
#define CSR9_SR_DO 0x00000008u
#define CSR9_SR	   0x00000800u
#define CSR9_RD	   0x00004000u
#define CSR9_MDC   0x00010000u
#define CSR9_MDO   0x00020000u
#define CSR9_MII   0x00040000u /* 1: the PHY drives MDIO (a read) */
#define CSR9_MDI   0x00080000u

/* CSR11 general-purpose timer (HRM 3.2.2.12). */
#define CSR11_VALUE 0x0000ffffu
#define CSR11_CON   0x00010000u

/* CSR12 general-purpose port (HRM 3.2.2.13): bit 8 set writes the pins'
 * directions, clear their output values. The link-sense input. */
#define CSR12_GPC     0x00000100u
#define TULIP_GP_LINK 6

/* CSR15 watchdog timer (HRM 3.2.2.16). */
#define CSR15_JBD   0x00000001u
#define CSR15_RWD   0x00000010u
#define CSR15_WMASK 0x00000037u

/* Descriptors (HRM 4.2): four little-endian longwords (big-endian with
 * CSR0 DBO). */
#define DES0_OWN	0x80000000u
#define RDES0_FF	0x40000000u
#define RDES0_FL_SHIFT	16
#define RDES0_ES	0x00008000u
#define RDES0_DE	0x00004000u
#define RDES0_RF	0x00000800u
#define RDES0_MF	0x00000400u
#define RDES0_FS	0x00000200u
#define RDES0_LS	0x00000100u
#define RDES0_TL	0x00000080u
#define RDES0_FT	0x00000020u
#define RDES0_RW	0x00000010u
#define RDES1_RER	0x02000000u
#define RDES1_RCH	0x01000000u
#define DES1_TBS2_SHIFT 11
#define DES1_TBS_MASK	0x7ffu
#define TDES0_ES	0x00008000u
#define TDES0_TO	0x00004000u
#define TDES0_LO	0x00000800u
#define TDES0_NC	0x00000400u
#define TDES1_IC	0x80000000u
#define TDES1_LS	0x40000000u
#define TDES1_FS	0x20000000u
#define TDES1_FT1	0x10000000u
#define TDES1_SET	0x08000000u
#define TDES1_TER	0x02000000u
#define TDES1_TCH	0x01000000u
#define TDES1_FT0	0x00400000u

#define TULIP_SETUP_LEN	  192
#define TULIP_PERFECT	  16 /* addresses in a perfect-filtering setup frame */
#define TULIP_HASH_BITS	  512
#define TULIP_FRAME_MIN	  60 /* without FCS: shorter frames are padded */
#define TULIP_FCS	  4
#define TULIP_JABBER	  2048 /* frames longer than this jabber (CSR15 JBD clear) */
#define TULIP_FRAME_MAX	  4096 /* and are cut here with jabber disabled */
#define TULIP_RX_DESC_MAX 256  /* descriptors one received frame may take */
#define TULIP_BUDGET	  64   /* frames per pass of the I/O thread */

/* Receive filter the setup frames program (HRM 4.2.3). */
enum tulip_filter_mode { FILTER_PERFECT, FILTER_HASH, FILTER_INVERSE, FILTER_HASH_ONLY };
struct tulip_filter {
	enum tulip_filter_mode mode;
	uint8_t perfect[TULIP_PERFECT][NET_ETH_ALEN]; /* FILTER_HASH: [0] is the unicast one */
	uint8_t hash[TULIP_HASH_BITS / 8];
};

/* The 93C46 serial EEPROM (64 16-bit words) bit-banged through CSR9. */
enum srom_phase { SROM_IDLE, SROM_CMD, SROM_READ, SROM_SKIP };
struct tulip_srom {
	uint16_t words[64];
	enum srom_phase phase;
	bool sk, dout;
	unsigned nbits; /* command bits shifted in (opcode + address) */
	uint32_t cmd;
	uint16_t addr, shift; /* READ: word being shifted out */
	unsigned left;	      /* bits of the current word still to shift out */
};

/* The MII PHY at address TULIP_PHY_ADDR on CSR9's MDC/MDIO (IEEE 802.3
 * clause 22). */
#define TULIP_PHY_ADDR 1
#define TULIP_MII_REGS 32
#define TULIP_MII_BMCR 0
#define TULIP_MII_ANAR 4
enum mii_phase { MII_PREAMBLE, MII_CMD, MII_READ, MII_WRITE };
struct tulip_mii {
	uint16_t reg[TULIP_MII_REGS];
	bool link_lost; /* BMSR link status latches low */
	enum mii_phase phase;
	bool mdc, mdi;
	unsigned ones, nbits;
	uint32_t word;
};

struct tulip_stats_ctr {
	atomic_ullong rx_packets, rx_bytes, rx_dropped, rx_missed;
	atomic_ullong tx_packets, tx_bytes, tx_dropped, kicks;
};

struct tulip {
	struct device dev; /* first: the bus's lock guards what follows */
	struct pci_dev pdev;
	struct vm *vm; /* NULL in unit tests: no ioeventfds */
	int irq_level; /* what was last given to pci_intx_set */
	char name[32];
	unsigned vlan;
	bool print_stats;
	struct net_tap tap;
	uint8_t mac[NET_ETH_ALEN];
	uint64_t bar_addr[2];	   /* BAR 0 (I/O), BAR 1 (memory), or PCI_BAR_UNMAPPED:
					 * where the ioeventfds are (the PCI core moves the ranges) */
	unsigned demand_len[2][2]; /* ioeventfds on CSR1, CSR2 per BAR: 0 none, else len + 1 */
	int kick_fd, wake_fd, stop_fd;
	pthread_t thread;
	bool thread_running;
	atomic_bool link_up;
	bool warned; /* guest nonsense logged once */

	/* Registers. */
	uint32_t csr0, csr3, csr4, csr6, csr7, csr9, csr10, csr15;
	uint32_t status; /* CSR5 sources (bits 0-14) */
	unsigned rs, ts, eb;
	uint32_t missed;	 /* CSR8 */
	uint32_t gpt;		 /* CSR11 as written */
	uint64_t gpt_deadline;	 /* ns, 0: not running */
	uint32_t gpt_frozen;	 /* the count left while quiesced */
	bool quiesced;		 /* the registry's quiesce: no I/O thread */
	uint8_t gp_dir, gp_out;	 /* CSR12 */
	bool fatal;		 /* fatal bus error: no DMA until a reset */
	uint32_t rx_cur, tx_cur; /* current descriptor addresses */
	uint64_t tx_poll_at;	 /* transmit automatic polling (CSR0 TAP), ns */
	uint64_t rx_grace_at;	 /* see tulip_ring.c: receive suspended */
	struct tulip_filter filter;
	struct tulip_srom srom;
	struct tulip_mii mii;

	/* The frame being gathered from transmit descriptors (until LS). */
	uint8_t tx_frame[TULIP_FRAME_MAX + NET_VLAN_HLEN];
	size_t tx_len;
	bool tx_in_frame;
	bool tx_jabber;

	/* I/O thread only. */
	uint8_t rx_buf[NET_VNET_HDR_LEN + 65536];
	struct {
		uint32_t addr, rdes0;
	} rx_used[TULIP_RX_DESC_MAX];

	struct tulip_stats_ctr ctr;
};

/* tulip.c */
void tulip_update_irq(struct tulip *t);
void tulip_fatal(struct tulip *t, const char *why);
void tulip_warn_once(struct tulip *t, const char *why);
void tulip_wake(struct tulip *t);
/* Guest memory through the PCI core's DMA helpers: -EPERM while Bus Master
 * Enable is clear (nothing moves), -EFAULT outside RAM. */
int tulip_dma_read(struct tulip *t, uint64_t addr, void *buf, uint64_t len) WARN_UNUSED;
int tulip_dma_write(struct tulip *t, uint64_t addr, const void *buf, uint64_t len) WARN_UNUSED;

/* tulip_ring.c (dev.lock held unless noted) */
void tulip_tx_reset(struct tulip *t);
/* Transmit up to a budget; true when more may be waiting. Takes and drops
 * dev.lock itself (frames go to the TAP without it). */
bool tulip_tx_serve(struct tulip *t);
/* Whether the I/O thread should read frames from the TAP now. */
bool tulip_rx_wants_frames(struct tulip *t, uint64_t now);
/* A guest action that may have given receive descriptors back. */
void tulip_rx_recheck(struct tulip *t);
/* Read and deliver up to a budget of frames (takes dev.lock per frame);
 * true when the TAP may hold more. */
bool tulip_rx_serve(struct tulip *t);
void tulip_filter_reset(struct tulip_filter *f);
bool tulip_filter_valid(const struct tulip_filter *f);
/* CSR6's read-only HP, HO and IF for the filter's mode. */
uint32_t tulip_filter_csr6(const struct tulip_filter *f);

/* tulip_serial.c */
uint32_t tulip_crc32(const uint8_t *p, size_t n);
void tulip_srom_build(struct tulip_srom *s, const uint8_t *mac);
void tulip_srom_reset(struct tulip_srom *s);
/* A CSR9 write: the serial ROM's pins (when CSR9 SR selects it). */
void tulip_srom_pins(struct tulip_srom *s, uint32_t csr9);
void tulip_mii_reset(struct tulip_mii *m);
void tulip_mii_link(struct tulip_mii *m, bool up);
/* BMCR and ANAR hold only what a guest write can leave in them. */
bool tulip_mii_regs_valid(const struct tulip_mii *m);
/* A CSR9 write: MDC/MDIO; m->mdi is then the level the PHY drives. */
void tulip_mii_pins(struct tulip_mii *m, uint32_t csr9, bool link_up);

#endif
