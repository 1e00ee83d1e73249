//! A framed tensor on the GPU, as the kernels read and write it: its buffer with the shape that says how the
//! data lies there (`channels` planes of `frame`'s size, each inside a zero frame: [`crate::frame`]). Kernel
//! wrappers take tensors rather than a buffer beside loose sizes, so a buffer cannot travel with another
//! tensor's shape.

use crate::frame::Frame;

#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub channels: usize,
    pub frame: Frame,
}

impl<'a> Tensor<'a> {
    pub fn new(buffer: &'a wgpu::Buffer, channels: usize, frame: Frame) -> Self {
        Self { buffer, channels, frame }
    }
}
