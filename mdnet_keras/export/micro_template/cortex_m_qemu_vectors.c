/* Cortex-M vector table for running the test under qemu-system-arm
   (-M mps2-an386): the board boots from address 0, reading the initial stack
   pointer and the reset handler there. The reset handler is newlib's _start
   (rdimon), which asks the semihosting host for the heap and stack. A real
   board brings its own startup file instead of this one. */
#ifdef __cplusplus
extern "C" {
#endif

void _start(void);

static void mdnet_qemu_hang(void) {
  for (;;) {
  }
}

typedef void (*mdnet_vector_t)(void);

/* Not static and referenced with -Wl,-u so --gc-sections keeps it. */
extern const mdnet_vector_t mdnet_qemu_vectors[16];
__attribute__((section(".vectors"), used))
const mdnet_vector_t mdnet_qemu_vectors[16] = {
    (mdnet_vector_t)0x00400000, /* stack: top of the board's first 4 MiB */
    _start,                     /* reset */
    mdnet_qemu_hang,            /* NMI */
    mdnet_qemu_hang,            /* hard fault */
    mdnet_qemu_hang,            /* memory management fault */
    mdnet_qemu_hang,            /* bus fault */
    mdnet_qemu_hang,            /* usage fault */
    0, 0, 0, 0,
    mdnet_qemu_hang,            /* SVCall */
    mdnet_qemu_hang,            /* debug monitor */
    0,
    mdnet_qemu_hang,            /* PendSV */
    mdnet_qemu_hang,            /* SysTick */
};

#ifdef __cplusplus
}
#endif
