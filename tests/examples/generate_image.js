const API_KEY = 'your_api_key_here';
const BASE_URL = 'https://yourdomain.com';
async function generateImage() {
  const response = await fetch(`${BASE_URL}/api/v1/images`, {
    method: 'POST',
    headers: {
      'Authorization': `Bearer ${API_KEY}`,
      'Content-Type': 'application/json'
    },
    body: JSON.stringify({
      prompt: 'A futuristic cityscape with flying cars',
      aspect_ratio: '16:9',
      num_images: 1
    })
  });
  const data = await response.json();
  if (data.success) {
    console.log('Image URL:', data.data.images[0].url);
  } else {
    console.error('Error:', data.error);
  }
}
generateImage();
