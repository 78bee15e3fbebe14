package sandbox

// Vanished exposes vanished to the black-box tests.
var Vanished = vanished
