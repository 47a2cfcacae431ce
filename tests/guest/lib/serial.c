/* COM1 console (16550A at BOARD_PORT_COM1), gprintf, PASS/FAIL bookkeeping
 * and the debug exit. */
#include "guest.h"

#define COM1	      BOARD_PORT_COM1
#define UART_LSR_THRE 0x20
#define THRE_POLLS    100000 /* give up waiting on a stuck LSR, print anyway */

static unsigned failures;

/* 115200 8N1, FIFOs on and cleared, no interrupts (PC16550D datasheet). */
void serial_init(void)
{
	outb(COM1 + 1, 0x00); /* IER */
	outb(COM1 + 3, 0x80); /* LCR.DLAB */
	outb(COM1 + 0, 0x01); /* DLL: 115200 */
	outb(COM1 + 1, 0x00); /* DLM */
	outb(COM1 + 3, 0x03); /* 8N1 */
	outb(COM1 + 2, 0xc7); /* FCR: enable, clear both, 14-byte trigger */
	outb(COM1 + 4, 0x03); /* MCR: DTR | RTS */
}

void serial_putc(char c)
{
	for (unsigned i = 0; i < THRE_POLLS; i++)
		if (inb(COM1 + 5) & UART_LSR_THRE)
			break;
	outb(COM1, (uint8_t)c);
}

static void put_str(const char *s, int width, int prec, bool left)
{
	int len = (int)strnlen(s, prec >= 0 ? (size_t)prec : 4096);

	for (; !left && width > len; width--)
		serial_putc(' ');
	for (int i = 0; i < len; i++)
		serial_putc(s[i]);
	for (; left && width > len; width--)
		serial_putc(' ');
}

static void put_num(uint64_t v, unsigned base, bool neg, int width, char pad, bool alt)
{
	char buf[24];
	int n = 0;

	do {
		buf[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (alt) {
		serial_putc('0');
		serial_putc('x');
		width -= 2;
	}
	if (neg) {
		if (pad == '0')
			serial_putc('-');
		width--;
	}
	for (; width > n; width--)
		serial_putc(pad);
	if (neg && pad != '0')
		serial_putc('-');
	while (n)
		serial_putc(buf[--n]);
}

/* %s %c %d %i %u %x %p %% with flags '0' '-' '#', a width, a precision
 * (strings only), and l/ll/z. */
void gvprintf(const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		char pad = ' ';
		bool left = false, alt = false, lng = false;
		int width = 0, prec = -1;

		if (*fmt != '%') {
			serial_putc(*fmt);
			continue;
		}
		for (fmt++;; fmt++) {
			if (*fmt == '0')
				pad = '0';
			else if (*fmt == '-')
				left = true;
			else if (*fmt == '#')
				alt = true;
			else
				break;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		if (*fmt == '.') {
			prec = 0;
			while (*++fmt >= '0' && *fmt <= '9')
				prec = prec * 10 + (*fmt - '0');
		}
		while (*fmt == 'l' || *fmt == 'z') {
			lng = true;
			fmt++;
		}
		switch (*fmt) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			put_str(s ? s : "(null)", width, prec, left);
			break;
		}
		case 'c': serial_putc((char)va_arg(ap, int)); break;
		case 'd':
		case 'i': {
			int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
			put_num(v < 0 ? 0 - (uint64_t)v : (uint64_t)v, 10, v < 0, width, pad,
				false);
			break;
		}
		case 'u':
			put_num(lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10, false, width,
				pad, false);
			break;
		case 'x':
			put_num(lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16, false, width,
				pad, alt);
			break;
		case 'p':
			put_num((uint64_t)(uintptr_t)va_arg(ap, void *), 16, false, width, pad,
				true);
			break;
		case '%': serial_putc('%'); break;
		case '\0': return;
		default:
			serial_putc('%');
			serial_putc(*fmt);
			break;
		}
	}
}

void gprintf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	gvprintf(fmt, ap);
	va_end(ap);
}

bool check(bool ok, const char *fmt, ...)
{
	va_list ap;

	gprintf(ok ? "PASS: " : "FAIL: ");
	va_start(ap, fmt);
	gvprintf(fmt, ap);
	va_end(ap);
	serial_putc('\n');
	if (!ok)
		failures++;
	return ok;
}

unsigned check_failures(void)
{
	return failures;
}

int check_result(int fail_code)
{
	gprintf("RESULT: %s\n", failures ? "FAIL" : "PASS");
	return failures ? fail_code : GUEST_EXIT_PASS;
}

/* QEMU isa-debug-exit semantics: the VMM exits with (code << 1) | 1. */
void guest_exit(uint32_t code)
{
	outl(BOARD_PORT_DEBUG_EXIT, code);
	guest_park();
}
